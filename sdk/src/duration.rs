//! Durations in plugin configs, written as people write them: `"500ms"`, `"10s"`, `"1m"`,
//! `"1h 30m"`, `"1d"`, `"2w"`, or an integer number of seconds.
//!
//! ```ignore
//! use maitred_sdk::duration;
//! use std::time::Duration;
//!
//! assert_eq!(duration::parse("1h 30m", "window"), Ok(Duration::from_secs(5400)));
//! ```

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// Parses one or more `<number><unit>` parts, optionally separated by spaces, with units `ms`,
/// `s`, `m`, `h`, `d` and `w`; a bare number is seconds. `what` names the setting in the
/// error, e.g. `invalid window "1 fortnight"; write e.g. ...`.
///
/// ```ignore
/// assert_eq!(duration::parse("500ms", "timeout"), Ok(Duration::from_millis(500)));
/// assert!(duration::parse("soon", "timeout").is_err());
/// ```
pub fn parse(text: &str, what: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid {what} {text:?}; write e.g. \"500ms\", \"90s\", \"10m\", \"1h 30m\", \"1d\" or a number of seconds"
        )
    };
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
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(invalid()),
        };
        rest = rest[unit_len..].trim_start();
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Deserializes a duration written as [`parse`] reads it, or as an integer number of seconds
/// (negative numbers are refused); `what` names the setting in errors. For a config field,
/// wrap it in your own type's `Deserialize`:
///
/// ```ignore
/// struct Window(Duration);
/// impl<'de> serde::Deserialize<'de> for Window {
///     fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
///         maitred_sdk::duration::deserialize(d, "window").map(Window)
///     }
/// }
/// ```
pub fn deserialize<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<Duration, D::Error> {
    struct V<'w>(&'w str);
    impl Visitor<'_> for V<'_> {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(
                f,
                "a {} such as \"10s\", \"1m\" or a number of seconds",
                self.0
            )
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(n))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom(format!("{} {n} is negative", self.0))),
            }
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse(text, self.0).map_err(E::custom)
        }
    }
    d.deserialize_any(V(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        let ms = |t: &str| parse(t, "x").map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("90"), Ok(90_000));
        assert_eq!(ms("90s"), Ok(90_000));
        assert_eq!(ms("10m"), Ok(600_000));
        assert_eq!(ms("1h 30m"), Ok(5_400_000));
        assert_eq!(ms("1h30m5s"), Ok(5_405_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("2w"), Ok(1_209_600_000));
        assert_eq!(ms(" 0 "), Ok(0));
    }

    #[test]
    fn refuses_the_rest_naming_the_setting() {
        for bad in [
            "",
            "m",
            "1 fortnight",
            "1.5h",
            "-1s",
            "99999999999999999999d",
        ] {
            let e = parse(bad, "window").unwrap_err();
            assert!(e.starts_with(&format!("invalid window {bad:?}")), "{e}");
        }
    }

    #[test]
    fn deserializes_strings_and_integers() {
        #[derive(Debug)]
        struct W(Duration);
        impl<'de> serde::Deserialize<'de> for W {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize(d, "window").map(W)
            }
        }
        let w = |json: &str| serde_json::from_str::<W>(json).map(|w| w.0);
        assert_eq!(w("\"1m\"").unwrap(), Duration::from_secs(60));
        assert_eq!(w("30").unwrap(), Duration::from_secs(30));
        assert!(
            w("-1")
                .unwrap_err()
                .to_string()
                .contains("window -1 is negative")
        );
    }
}
