//! libinjection's SQL injection and XSS detectors behind `@detectSQLi` and `@detectXSS`, from
//! `libinjectionrs`, a pure-Rust port of libinjection (the library ModSecurity and Coraza use).

/// The libinjection fingerprint (e.g. `s&sos` for `' OR '1'='1`) when `input` looks like SQL
/// injection; ModSecurity stores it in `TX.0`.
pub(crate) fn sqli_fingerprint(input: &[u8]) -> Option<String> {
    let result = libinjectionrs::detect_sqli(input);
    if !result.is_injection() {
        return None;
    }
    Some(
        result
            .fingerprint
            .map(|f| f.to_string())
            .unwrap_or_default(),
    )
}

/// Whether `input` looks like cross-site scripting to libinjection's HTML5 tokenizer.
pub(crate) fn is_xss(input: &[u8]) -> bool {
    libinjectionrs::detect_xss(input).is_injection()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_sql_injection_is_detected_with_its_fingerprint() {
        assert_eq!(sqli_fingerprint(b"' OR '1'='1").as_deref(), Some("s&sos"));
        assert_eq!(sqli_fingerprint(b"1 UNION SELECT").as_deref(), Some("1UE"));
        for attack in [
            "1 UNION SELECT password FROM users",
            "admin'--",
            "1' AND 1=1--",
            "-1 union all select 1,2,3",
            "1 AND SLEEP(5)",
            "' UNION SELECT NULL--",
        ] {
            assert!(sqli_fingerprint(attack.as_bytes()).is_some(), "{attack}");
        }
    }

    #[test]
    fn ordinary_text_is_not_sql_injection() {
        for text in [
            "John Smith",
            "O'Brien",
            "McDonald's",
            "Hello, how are you today?",
            r#"{"name":"x","age":3}"#,
            "I want to select one or two items",
            "The union of two sets",
            "Drop me a line or two",
            "user@example.com",
            "2024-01-01",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
            "en-US,en;q=0.9",
            "#hashtag",
            "/api/v1/users/42",
        ] {
            assert_eq!(sqli_fingerprint(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn classic_xss_is_detected() {
        for attack in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<svg onload=alert(1)>",
            "\"><script>alert(1)</script>",
            "<iframe src=javascript:alert(1)>",
            "<body onload=alert(1)>",
        ] {
            assert!(is_xss(attack.as_bytes()), "{attack}");
        }
    }

    #[test]
    fn ordinary_text_and_harmless_markup_are_not_xss() {
        for text in [
            "John Smith",
            "a < b and c > d",
            "I <3 you",
            "<b>bold</b>",
            "<p>paragraph</p>",
            r#"{"html":"<p>hi</p>"}"#,
            "see https://example.com/page?x=1",
            r#"it's "quoted""#,
        ] {
            assert!(!is_xss(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"'\"`;-#/*()<>=&| \\\nORUNIONSELECTscriptonerror01";
        for n in 0..5_000 {
            let value: Vec<u8> = (0..n % 48 + 1)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let r = (x >> 8) as usize;
                    if r.is_multiple_of(4) {
                        (r >> 3) as u8
                    } else {
                        alphabet[r % alphabet.len()]
                    }
                })
                .collect();
            sqli_fingerprint(&value);
            is_xss(&value);
        }
    }
}
