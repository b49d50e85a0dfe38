//! Window lengths in the config: `"1m"`, `"500ms"`, `"1h 30m"`, or integer seconds (read by
//! [`maitred_sdk::duration`]).

use serde::de::{self, Deserializer};
use std::time::Duration;

/// The longest window: what the host's millisecond counters hold (about 49 days).
pub const MAX: Duration = Duration::from_millis(u32::MAX as u64);

/// A window length, 1 ms to [`MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub Duration);

/// Parses a window (see [`maitred_sdk::duration::parse`]), 1 ms to [`MAX`].
///
/// ```ignore
/// assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    checked(maitred_sdk::duration::parse(text, "window")?, text)
}

/// `d` if it is a usable window length.
fn checked(d: Duration, text: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("window {text:?} is empty; it must be at least 1ms"))
    } else if d > MAX {
        Err(format!("window {text:?} is too long (at most 49 days)"))
    } else {
        Ok(d)
    }
}

impl<'de> de::Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let duration = maitred_sdk::duration::deserialize(d, "window")?;
        checked(duration, &format!("{}ms", duration.as_millis()))
            .map(Window)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let ms = |t: &str| parse(t).map(|d| d.as_millis());
        assert_eq!(ms("1m"), Ok(60_000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("1s"), Ok(1000));
        assert_eq!(ms("90"), Ok(90_000));
        assert_eq!(ms(" 1h 30m "), Ok(5_400_000));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("1s 1ms"), Ok(1001));
    }

    #[test]
    fn rejects_nonsense_and_out_of_range() {
        for bad in [
            "",
            " ",
            "m",
            "1 fortnight",
            "1.5s",
            "-1s",
            "1M",
            "0",
            "0ms",
            "50d",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse("49d").is_ok());
    }

    #[test]
    fn deserializes_strings_and_seconds() {
        let w = |json: &str| serde_json::from_str::<Window>(json).map(|w| w.0.as_millis());
        assert_eq!(w("\"1m\"").unwrap(), 60_000);
        assert_eq!(w("60").unwrap(), 60_000);
        assert!(w("0").unwrap_err().to_string().contains("at least 1ms"));
        assert!(w("-5").unwrap_err().to_string().contains("negative"));
        assert!(w("4294968").unwrap_err().to_string().contains("too long"));
        assert!(w("true").is_err());
    }
}
