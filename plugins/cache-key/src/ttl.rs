//! Freshness lifetimes in the config: `"1d"`, `"10m"`, `"1h 30m"`, or integer seconds.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// A lifetime in whole seconds, as the host's `set-cache-ttl` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u32);

/// Parses a lifetime: one or more `<number><unit>` parts, optionally separated by spaces,
/// with units `s`, `m`, `h`, `d` and `w` (`"90s"`, `"10m"`, `"1h 30m"`, `"1d"`); a bare
/// number is seconds. The total must fit in a `u32` (about 136 years).
///
/// ```ignore
/// assert_eq!(parse("1h 30m"), Ok(5400));
/// ```
pub fn parse(text: &str) -> Result<u32, String> {
    let invalid = || {
        format!("invalid TTL {text:?}; write e.g. \"90s\", \"10m\", \"1h 30m\", \"1d\" or 86400")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(invalid()),
        };
        rest = rest[unit_len..].trim_start();
        total = number
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
    }
    u32::try_from(total).map_err(|_| format!("TTL {text:?} is too long (at most {} s)", u32::MAX))
}

impl<'de> de::Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TTL such as \"10m\", \"1d\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seconds, E> {
                u32::try_from(n)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("TTL {n} is too long (at most {} s)", u32::MAX)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seconds, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("TTL {n} is negative"))),
                }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Seconds, E> {
                parse(text).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
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
        assert_eq!(parse("1h"), Ok(3600));
        assert_eq!(parse("1d"), Ok(86_400));
        assert_eq!(parse("2w"), Ok(1_209_600));
        assert_eq!(parse("1h 30m"), Ok(5400));
        assert_eq!(parse("1h30m5s"), Ok(5405));
        assert_eq!(parse(" 0 "), Ok(0));
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "",
            " ",
            "m",
            "1x",
            "1 fortnight",
            "-5",
            "1.5h",
            "1h -2m",
            "10ms",
            "d1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse("1 fortnight").unwrap_err(),
            "invalid TTL \"1 fortnight\"; write e.g. \"90s\", \"10m\", \"1h 30m\", \"1d\" or 86400"
        );
        assert!(parse("100000w").unwrap_err().contains("too long"));
        assert!(parse("99999999999999999999").is_err());
    }
}
