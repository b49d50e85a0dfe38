//! The validation operators: `@validateByteRange`, `@validateUrlEncoding`,
//! `@validateUtf8Encoding`. Each matches when the value is *not* valid.

/// The bytes `@validateByteRange` allows.
#[derive(Debug)]
pub(super) struct ByteRanges([bool; 256]);

impl ByteRanges {
    /// Parses `"1-255"` or `"9,10,13,32-126"` (whitespace allowed around the parts).
    pub(super) fn parse(spec: &str) -> Result<ByteRanges, String> {
        let mut allowed = [false; 256];
        let byte = |s: &str| {
            s.trim().parse::<u8>().map_err(|_| {
                format!(
                    "@validateByteRange: invalid byte {:?} in {spec:?}",
                    s.trim()
                )
            })
        };
        let mut any = false;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (byte(lo)?, byte(hi)?),
                None => (byte(part)?, byte(part)?),
            };
            if lo > hi {
                return Err(format!("@validateByteRange: empty range {part:?}"));
            }
            allowed[usize::from(lo)..=usize::from(hi)].fill(true);
            any = true;
        }
        if !any {
            return Err("@validateByteRange needs a range".into());
        }
        Ok(ByteRanges(allowed))
    }

    /// Whether some byte of `value` is outside the ranges.
    pub(super) fn violated_by(&self, value: &[u8]) -> bool {
        value.iter().any(|&b| !self.0[usize::from(b)])
    }
}

/// Whether `value` has a `%` not followed by two hex digits.
pub(super) fn invalid_url_encoding(value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = value[i..].iter().position(|&b| b == b'%') {
        let at = i + p;
        match value.get(at + 1..at + 3) {
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => i = at + 3,
            _ => return true,
        }
    }
    false
}

/// Whether `value` is not well-formed UTF-8 (truncated or invalid sequences, overlong forms,
/// surrogates, code points above U+10FFFF).
pub(super) fn invalid_utf8(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_err()
}
