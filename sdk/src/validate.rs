//! Checks for values taken from a plugin's config, so `init` can reject them with a clear
//! message instead of failing on every request.
//!
//! ```
//! use maitred_sdk::validate;
//!
//! assert!(validate::header_name("x-env").is_ok());
//! assert!(validate::header_name("bad name").is_err());
//! ```

/// Checks that `name` is a valid HTTP header name (a non-empty RFC 9110 token: letters,
/// digits and ``!#$%&'*+-.^_`|~``). Any case is accepted.
///
/// ```
/// use maitred_sdk::validate::header_name;
///
/// assert!(header_name("X-Request-Id").is_ok());
/// assert_eq!(
///     header_name("x:y").unwrap_err(),
///     "invalid header name \"x:y\": ':' is not allowed in a header name",
/// );
/// ```
pub fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("invalid header name \"\": a header name cannot be empty".to_string());
    }
    match name.chars().find(|&c| !is_token_char(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "invalid header name {name:?}: {c:?} is not allowed in a header name"
        )),
    }
}

/// Checks that `value` is a valid HTTP header value: no control characters (bytes below
/// 0x20 other than tab, and 0x7f), so in particular no CR or LF.
///
/// ```
/// use maitred_sdk::validate::header_value;
///
/// assert!(header_value(b"text/plain; charset=utf-8").is_ok());
/// assert!(header_value(b"a\r\nb").is_err());
/// ```
pub fn header_value(value: &[u8]) -> Result<(), String> {
    match value
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        None => Ok(()),
        Some(b) => Err(format!(
            "invalid header value {:?}: control character 0x{b:02x} is not allowed in a header value",
            String::from_utf8_lossy(value)
        )),
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        for ok in ["a", "X-Env", "x_y", "a.b", "!#$%&'*+-.^_`|~09AZaz"] {
            assert!(header_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a\r\n", "é", "a/b", "(a)", "a\"", "a\t"] {
            assert!(header_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            header_name("").unwrap_err(),
            "invalid header name \"\": a header name cannot be empty"
        );
        assert_eq!(
            header_name("a b").unwrap_err(),
            "invalid header name \"a b\": ' ' is not allowed in a header name"
        );
    }

    #[test]
    fn header_values() {
        for ok in [&b""[..], b"x", b"a\tb", b"caf\xc3\xa9", b"\xff", b"!~ "] {
            assert!(header_value(ok).is_ok(), "{ok:?}");
        }
        for bad in [&b"\r"[..], b"\n", b"a\0", b"\x7f", b"\x1b[0m"] {
            assert!(header_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            header_value(b"a\nb").unwrap_err(),
            "invalid header value \"a\\nb\": control character 0x0a is not allowed in a header value"
        );
    }
}
