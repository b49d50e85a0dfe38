//! Freshness lifetimes in the config: `"1d"`, `"10m"`, `"1h 30m"`, or integer seconds (read by
//! [`maitred_sdk::duration`]).

use serde::de::{self, Deserializer};

/// A lifetime in whole seconds, as the host's `set-cache-ttl` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u32);

/// Parses a lifetime (see [`maitred_sdk::duration::parse`]) into whole seconds; it must be a
/// whole number of seconds and fit in a `u32` (about 136 years).
///
/// ```ignore
/// assert_eq!(parse("1h 30m"), Ok(5400));
/// ```
pub fn parse(text: &str) -> Result<u32, String> {
    seconds(maitred_sdk::duration::parse(text, "TTL")?, text)
}

fn seconds(d: std::time::Duration, text: &str) -> Result<u32, String> {
    if d.subsec_nanos() != 0 {
        return Err(format!("TTL {text:?} is not a whole number of seconds"));
    }
    u32::try_from(d.as_secs())
        .map_err(|_| format!("TTL {text:?} is too long (at most {} s)", u32::MAX))
}

impl<'de> de::Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let duration = maitred_sdk::duration::deserialize(d, "TTL")?;
        seconds(duration, &format!("{}s", duration.as_secs()))
            .map(Seconds)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("90s"), Ok(90));
        assert_eq!(parse("90"), Ok(90));
        assert_eq!(parse("10m"), Ok(600));
        assert_eq!(parse("1d"), Ok(86_400));
        assert_eq!(parse("2w"), Ok(1_209_600));
        assert_eq!(parse("1h 30m"), Ok(5400));
        assert_eq!(parse(" 0 "), Ok(0));
    }

    #[test]
    fn refuses_the_rest() {
        for bad in ["", "m", "1 fortnight", "-5", "1.5h", "10ms", "d1"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse("1 fortnight")
                .unwrap_err()
                .starts_with("invalid TTL \"1 fortnight\"")
        );
        assert!(parse("100000w").unwrap_err().contains("too long"));
    }
}
