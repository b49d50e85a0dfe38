//! Window lengths in the config: `"1m"`, `"500ms"`, `"1h 30m"`, or integer seconds.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// The longest window: what the host's millisecond counters hold (about 49 days).
pub const MAX: Duration = Duration::from_millis(u32::MAX as u64);

/// A window length, 1 ms to [`MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub Duration);

/// Parses a window: one or more `<number><unit>` parts, optionally separated by spaces, with
/// units `ms`, `s`, `m`, `h` and `d` (`"500ms"`, `"1s"`, `"1m"`, `"1h 30m"`, `"1d"`); a bare
/// number is seconds.
///
/// ```ignore
/// assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid window {text:?}; write e.g. \"500ms\", \"1s\", \"1m\", \"1h\" or 60");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ms: u64 = 0;
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
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        rest = rest[unit_len..].trim_start();
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    checked(Duration::from_millis(total_ms), text)
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
        struct V;
        impl Visitor<'_> for V {
            type Value = Window;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a window such as \"1m\", \"500ms\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Window, E> {
                let d = Duration::from_secs(n.min(MAX.as_secs() + 1));
                checked(d, &n.to_string()).map(Window).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Window, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("window {n} is negative"))),
                }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Window, E> {
                parse(text).map(Window).map_err(E::custom)
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
