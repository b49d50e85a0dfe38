//! Name patterns with `*` wildcards, for query parameter and cookie names: `utm_*` (a
//! prefix), `*_ref` (a suffix), `a*b`, `*` (anything), or a plain name (exact).

/// A checked name pattern. Matching is case-sensitive and byte-wise; `*` matches any run of
/// characters, including none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Checks a pattern: not empty, and without whitespace, control characters or the
    /// separators `&`, `=`, `#`, `;`, `,`, which can never be part of a parameter or cookie
    /// name.
    ///
    /// ```ignore
    /// assert!(Glob::parse("utm_*").is_ok());
    /// assert!(Glob::parse("a=b").is_err());
    /// ```
    pub fn parse(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("a name pattern cannot be empty".to_string());
        }
        match pattern
            .chars()
            .find(|&c| c.is_whitespace() || c.is_control() || "&=#;,".contains(c))
        {
            Some(c) => Err(format!(
                "{pattern:?}: {c:?} cannot be part of a name pattern"
            )),
            None => Ok(Glob(pattern.to_string())),
        }
    }

    /// Whether `name` matches the pattern.
    ///
    /// ```ignore
    /// assert!(Glob::parse("utm_*").unwrap().matches("utm_source"));
    /// ```
    pub fn matches(&self, name: &str) -> bool {
        wildcard(self.0.as_bytes(), name.as_bytes())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Wildcard matching that backtracks only to the last `*`: at most
/// `pattern.len() * text.len()` steps, never exponential.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The position of the last `*` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry after it.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The first of `globs` that matches `name`, if any.
pub fn any_matches<'g>(globs: &'g [Glob], name: &str) -> Option<&'g Glob> {
    globs.iter().find(|g| g.matches(name))
}

/// Parses a list of patterns; errors name the config key.
pub fn parse_all(key: &str, patterns: &[String]) -> Result<Vec<Glob>, String> {
    patterns
        .iter()
        .map(|p| Glob::parse(p).map_err(|e| format!("{key}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn exact_names() {
        assert!(m("fbclid", "fbclid"));
        assert!(!m("fbclid", "fbclid2"));
        assert!(!m("fbclid", "xfbclid"));
        assert!(!m("fbclid", "FBCLID"));
        assert!(!m("a", ""));
    }

    #[test]
    fn prefixes_suffixes_and_infixes() {
        assert!(m("utm_*", "utm_source"));
        assert!(m("utm_*", "utm_"));
        assert!(!m("utm_*", "utm"));
        assert!(!m("utm_*", "xutm_source"));
        assert!(m("*_ref", "site_ref"));
        assert!(m("*_ref", "_ref"));
        assert!(!m("*_ref", "site_ref2"));
        assert!(m("a*b", "ab"));
        assert!(m("a*b", "axxb"));
        assert!(m("a*b", "abab"));
        assert!(!m("a*b", "aba"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("**", "x"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b*", "xxbxxaxx"));
        assert!(m("wordpress_logged_in_*", "wordpress_logged_in_0123abcd"));
    }

    #[test]
    fn backtracking_is_bounded() {
        let text = "a".repeat(10_000);
        assert!(!m("*a*a*a*a*a*b", &text));
        assert!(m("*a*a*a*a*a*", &text));
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "", "a b", "a=b", "a&b", "a#", "a;b", "a,b", "a\tb", "\u{7f}",
        ] {
            assert!(Glob::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Glob::parse("a=b").unwrap_err(),
            "\"a=b\": '=' cannot be part of a name pattern"
        );
        assert_eq!(
            parse_all("ignore_query", &["ok".into(), "".into()]).unwrap_err(),
            "ignore_query: a name pattern cannot be empty"
        );
    }
}
