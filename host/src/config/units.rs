//! Human-friendly durations ("5s", "250ms") and sizes ("64MiB", "8k") in config values.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration written as a string such as `"5s"`, `"250ms"` or `"1m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(DurationStr)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write e.g. \"5s\" or \"250ms\""
                ))
            })
    }
}

/// A byte size written as a string such as `"64MiB"`, `"8k"` or `"1024"`, or as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeStr(pub u64);

impl<'de> Deserialize<'de> for SizeStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(SizeStr(n)),
            Raw::Text(text) => parse_size(&text).map(SizeStr).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {text:?}; write e.g. \"64MiB\", \"512k\" or \"1048576\""
                ))
            }),
        }
    }
}

/// Parses `"64MiB"`, `"64MB"`, `"64m"`, `"8k"`, `"1024"` (binary multiples throughout).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1 GB"), Some(1 << 30));
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }
}
