//! ModSecurity operators (`@rx`, `@pm`, `@streq`, ...): parsed and compiled once from a rule's
//! operator string, then evaluated against each transformed value.
//!
//! Semantics follow libmodsecurity v3. Evaluation allocates only on a match (for the captures
//! it returns), except for arguments with macros, which are expanded each time.

use std::borrow::Cow;
use std::path::Path;

use aho_corasick::AhoCorasick;

use crate::injection;

mod ip;
mod phrase;
mod regex;
mod validate;

/// Expands macros like `%{tx.anomaly_score}` / `%{REQUEST_HEADERS.host}` at match time.
pub trait Expand {
    /// Returns `text` with every macro replaced by its current value.
    fn expand<'a>(&self, text: &'a str) -> Cow<'a, str>;
}

/// Where an operator loads files from (`@pmFromFile x.data` is relative to the rule file's dir).
pub struct LoadContext<'a> {
    /// The directory of the rule file that holds the rule.
    pub rule_dir: &'a Path,
}

/// A parsed operator: its name, whether it is negated (`!@`), and its compiled argument.
pub struct Operator {
    name: &'static str,
    negated: bool,
    kind: Kind,
}

/// An operator argument that may hold macros, expanded at evaluation.
struct Arg {
    text: String,
    has_macros: bool,
}

impl Arg {
    fn new(text: &str) -> Arg {
        Arg {
            text: text.to_string(),
            has_macros: text.contains("%{"),
        }
    }

    /// The argument for this evaluation.
    fn get<'a>(&'a self, env: &dyn Expand) -> Cow<'a, str> {
        if self.has_macros {
            env.expand(&self.text)
        } else {
            Cow::Borrowed(&self.text)
        }
    }
}

/// The integer comparisons.
#[derive(Clone, Copy)]
enum Compare {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

/// What an operator does, with its compiled argument.
enum Kind {
    Rx(regex::Pattern),
    Pm(AhoCorasick),
    StrEq(Arg),
    Contains(Arg),
    ContainsWord(Arg),
    BeginsWith(Arg),
    EndsWith(Arg),
    Within(Arg),
    Compare(Compare, Arg),
    IpMatch(ip::IpSet),
    ValidateByteRange(validate::ByteRanges),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    DetectSqli,
    DetectXss,
    UnconditionalMatch,
    NoMatch,
}

impl Operator {
    /// `spec` is the operator string as written in the rule, e.g. "@rx ^(?i)foo", "!@streq x",
    /// "@pmFromFile scanners.data", or a bare regex without '@' (means @rx).
    /// Errors say what is unsupported or invalid (the engine reports it with the rule id).
    pub fn parse(spec: &str, ctx: &LoadContext) -> Result<Operator, String> {
        let spec = spec.trim_start();
        let (negated, spec) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, spec),
        };
        let (name, arg) = match spec.strip_prefix('@') {
            Some(rest) => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], rest[end..].trim_start())
            }
            None => ("rx", spec),
        };
        let (name, kind) = Self::kind(name, arg, ctx)?;
        Ok(Operator {
            name,
            negated,
            kind,
        })
    }

    /// The canonical name and compiled form of operator `name` with argument `arg`.
    fn kind(name: &str, arg: &str, ctx: &LoadContext) -> Result<(&'static str, Kind), String> {
        let needs_arg = |n: &'static str| {
            if arg.is_empty() {
                Err(format!("@{n} needs an argument"))
            } else {
                Ok(n)
            }
        };
        Ok(match name.to_ascii_lowercase().as_str() {
            "rx" => ("rx", Kind::Rx(regex::Pattern::new(arg)?)),
            "pm" => (
                needs_arg("pm")?,
                Kind::Pm(phrase::build(&phrase::from_argument(arg)?)?),
            ),
            "pmfromfile" | "pmf" => (
                needs_arg("pmFromFile")?,
                Kind::Pm(phrase::build(&phrase::from_files(arg, ctx.rule_dir)?)?),
            ),
            "streq" => ("streq", Kind::StrEq(Arg::new(arg))),
            "contains" => ("contains", Kind::Contains(Arg::new(arg))),
            "strmatch" => ("strmatch", Kind::Contains(Arg::new(arg))),
            "containsword" => ("containsWord", Kind::ContainsWord(Arg::new(arg))),
            "beginswith" => ("beginsWith", Kind::BeginsWith(Arg::new(arg))),
            "endswith" => ("endsWith", Kind::EndsWith(Arg::new(arg))),
            "within" => ("within", Kind::Within(Arg::new(arg))),
            "eq" => ("eq", Kind::Compare(Compare::Eq, Arg::new(arg))),
            "ge" => ("ge", Kind::Compare(Compare::Ge, Arg::new(arg))),
            "gt" => ("gt", Kind::Compare(Compare::Gt, Arg::new(arg))),
            "le" => ("le", Kind::Compare(Compare::Le, Arg::new(arg))),
            "lt" => ("lt", Kind::Compare(Compare::Lt, Arg::new(arg))),
            "ipmatch" => ("ipMatch", Kind::IpMatch(ip::IpSet::parse(arg)?)),
            "ipmatchfromfile" | "ipmatchf" => (
                needs_arg("ipMatchFromFile")?,
                Kind::IpMatch(ip::IpSet::from_files(arg, ctx.rule_dir)?),
            ),
            "validatebyterange" => (
                "validateByteRange",
                Kind::ValidateByteRange(validate::ByteRanges::parse(arg)?),
            ),
            "validateurlencoding" => ("validateUrlEncoding", Kind::ValidateUrlEncoding),
            "validateutf8encoding" => ("validateUtf8Encoding", Kind::ValidateUtf8Encoding),
            "detectsqli" => ("detectSQLi", Kind::DetectSqli),
            "detectxss" => ("detectXSS", Kind::DetectXss),
            "unconditionalmatch" => ("unconditionalMatch", Kind::UnconditionalMatch),
            "nomatch" => ("noMatch", Kind::NoMatch),
            _ => return Err(format!("unsupported operator @{name}")),
        })
    }

    /// Evaluates against one value. Returns Some(captures) on a match (after negation):
    /// captures[0] is the matched text (whole regex match / matched phrase / the value), then
    /// regex groups 1..=9 for @rx (used by the `capture` action as TX.0..TX.9); None otherwise.
    pub fn evaluate(&self, value: &[u8], env: &dyn Expand) -> Option<Vec<Vec<u8>>> {
        if self.negated {
            match self.test(value, env, false) {
                Some(_) => None,
                None => Some(vec![value.to_vec()]),
            }
        } else {
            self.test(value, env, true)
        }
    }

    /// The operator's name without '@', e.g. "rx", for logs.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Whether the operator matches, before negation; with `captures`, what it captured
    /// (without, an empty list that does not allocate).
    fn test(&self, value: &[u8], env: &dyn Expand, captures: bool) -> Option<Vec<Vec<u8>>> {
        let whole = |m: &[u8]| {
            if captures {
                vec![m.to_vec()]
            } else {
                Vec::new()
            }
        };
        let when = |matched: bool, m: &[u8]| matched.then(|| whole(m));
        match &self.kind {
            Kind::Rx(pattern) => pattern.with(
                |source| env.expand(source).into_owned(),
                |re| {
                    if !re.is_match(value) {
                        return None;
                    }
                    if !captures {
                        return Some(Vec::new());
                    }
                    let caps = re.captures(value)?;
                    Some(
                        (0..caps.len().min(10))
                            .map(|i| caps.get(i).map_or(Vec::new(), |m| m.as_bytes().to_vec()))
                            .collect(),
                    )
                },
            ),
            Kind::Pm(ac) => ac.find(value).map(|m| whole(&value[m.range()])),
            Kind::StrEq(arg) => when(value == arg.get(env).as_bytes(), value),
            Kind::Contains(arg) => {
                let arg = arg.get(env);
                when(contains(value, arg.as_bytes()), arg.as_bytes())
            }
            Kind::ContainsWord(arg) => {
                let arg = arg.get(env);
                when(contains_word(value, arg.as_bytes()), arg.as_bytes())
            }
            Kind::BeginsWith(arg) => {
                let arg = arg.get(env);
                when(value.starts_with(arg.as_bytes()), arg.as_bytes())
            }
            Kind::EndsWith(arg) => {
                let arg = arg.get(env);
                when(value.ends_with(arg.as_bytes()), arg.as_bytes())
            }
            Kind::Within(arg) => when(contains(arg.get(env).as_bytes(), value), value),
            Kind::Compare(op, arg) => {
                let (v, a) = (atoi(value), atoi(arg.get(env).as_bytes()));
                let matched = match op {
                    Compare::Eq => v == a,
                    Compare::Ge => v >= a,
                    Compare::Gt => v > a,
                    Compare::Le => v <= a,
                    Compare::Lt => v < a,
                };
                when(matched, value)
            }
            Kind::IpMatch(set) => when(set.contains(value), value),
            Kind::ValidateByteRange(ranges) => when(ranges.violated_by(value), value),
            Kind::ValidateUrlEncoding => when(validate::invalid_url_encoding(value), value),
            Kind::ValidateUtf8Encoding => when(validate::invalid_utf8(value), value),
            Kind::DetectSqli => injection::sqli_fingerprint(value).map(|fp| {
                if captures {
                    vec![fp.into_bytes()]
                } else {
                    Vec::new()
                }
            }),
            Kind::DetectXss => when(injection::is_xss(value), value),
            Kind::UnconditionalMatch => Some(whole(value)),
            Kind::NoMatch => None,
        }
    }
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Whether `word` occurs in `value` with no word character (`[A-Za-z0-9_]`) touching it.
fn contains_word(value: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    memchr::memmem::find_iter(value, word).any(|at| {
        (at == 0 || !is_word(&value[at - 1]))
            && value.get(at + word.len()).is_none_or(|b| !is_word(b))
    })
}

/// C's `atoi`: optional leading whitespace and sign, then the leading digits; anything that is
/// not a number is 0.
fn atoi(text: &[u8]) -> i64 {
    let text = &text[text.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let n = digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0i64, |n, &d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative { -n } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Expands `%{name}` from a fixed list.
    struct Vars(&'static [(&'static str, &'static str)]);

    impl Expand for Vars {
        fn expand<'a>(&self, text: &'a str) -> Cow<'a, str> {
            let mut out = text.to_string();
            for (name, value) in self.0 {
                out = out.replace(&format!("%{{{name}}}"), value);
            }
            Cow::Owned(out)
        }
    }

    const ENV: Vars = Vars(&[
        ("tx.methods", "GET HEAD POST"),
        ("tx.threshold", "5"),
        ("tx.word", "admin"),
        ("tx.re", "^ad.+n$"),
    ]);

    fn op(spec: &str) -> Operator {
        Operator::parse(
            spec,
            &LoadContext {
                rule_dir: Path::new("/nonexistent"),
            },
        )
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn eval(spec: &str, value: &str) -> Option<Vec<String>> {
        op(spec).evaluate(value.as_bytes(), &ENV).map(|caps| {
            caps.into_iter()
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .collect()
        })
    }

    fn hit(spec: &str, value: &str) -> bool {
        eval(spec, value).is_some()
    }

    /// A fresh directory for files an operator loads.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("waf-op-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn specs_parse_with_names_and_negation() {
        assert_eq!(op("@rx ^a").name(), "rx");
        assert_eq!(op("^a").name(), "rx");
        assert_eq!(op("!@streq x").name(), "streq");
        assert!(hit("^a", "abc"));
        assert!(!hit("!^a", "abc"));
        assert!(hit("!@streq x", "y"));
        assert_eq!(eval("!@streq x", "y"), Some(vec!["y".into()]));
        assert_eq!(eval("!@streq x", "x"), None);
        let err = |spec: &str| {
            Operator::parse(
                spec,
                &LoadContext {
                    rule_dir: Path::new("/"),
                },
            )
            .err()
            .unwrap()
        };
        assert_eq!(err("@geoLookup"), "unsupported operator @geoLookup");
        assert!(err("@rx (?<!a)b").starts_with("unsupported regex"));
        assert!(err("@rx (").starts_with("invalid regex"));
        assert!(err("@pm").contains("argument"));
    }

    #[test]
    fn rx_captures_the_match_and_groups() {
        assert_eq!(
            eval(r"@rx (\d+)-(\d+)", "a 12-34 b"),
            Some(vec!["12-34".into(), "12".into(), "34".into()])
        );
        assert_eq!(eval("@rx b+", "abbbc"), Some(vec!["bbb".into()]));
        assert_eq!(
            eval("@rx (x)?y", "y"),
            Some(vec!["y".into(), String::new()])
        );
        assert_eq!(eval("@rx ^x", "abc"), None);
        let groups = "(a)".repeat(12);
        assert_eq!(
            eval(&format!("@rx {groups}"), &"a".repeat(12))
                .unwrap()
                .len(),
            10
        );
        // An empty pattern matches everything.
        assert!(hit("@rx ", "anything"));
    }

    #[test]
    fn rx_with_macros_is_compiled_per_expansion() {
        assert!(hit("@rx %{tx.re}", "admin"));
        assert!(!hit("@rx %{tx.re}", "user"));
        assert!(hit("@rx ^%{tx.word}$", "admin"));
    }

    #[test]
    fn pm_matches_phrases_case_insensitively() {
        assert_eq!(
            eval("@pm select union", "1 UNION all"),
            Some(vec!["UNION".into()])
        );
        assert!(!hit("@pm select union", "onion"));
        assert!(hit("@pm |41 42|c", "xabc"));
        assert!(hit(r#"@pm "nikto sqlmap""#, "Mozilla sqlmap/1.0"));
    }

    #[test]
    fn pm_from_file_reads_phrases_relative_to_the_rule_dir() {
        let dir = temp_dir("pm");
        std::fs::write(
            dir.join("scanners.data"),
            "# scanners\n\nnikto\r\nsql map\n",
        )
        .unwrap();
        let ctx = LoadContext { rule_dir: &dir };
        let op = Operator::parse("@pmFromFile scanners.data", &ctx).unwrap();
        assert_eq!(op.name(), "pmFromFile");
        let caps = op.evaluate(b"Mozilla SQL Map", &ENV).unwrap();
        assert_eq!(caps, vec![b"SQL Map".to_vec()]);
        assert!(op.evaluate(b"# scanners", &ENV).is_none());
        assert!(
            Operator::parse("@pmf scanners.data", &ctx)
                .unwrap()
                .evaluate(b"NIKTO", &ENV)
                .is_some()
        );
        let err = Operator::parse("@pmFromFile missing.data", &ctx)
            .err()
            .unwrap();
        assert!(err.contains("missing.data"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn string_comparisons() {
        assert_eq!(eval("@streq GET", "GET"), Some(vec!["GET".into()]));
        assert!(!hit("@streq GET", "get"));
        assert!(hit("@streq %{tx.word}", "admin"));
        assert_eq!(eval("@contains dmi", "admin"), Some(vec!["dmi".into()]));
        assert!(hit("@contains %{tx.word}", "the admin page"));
        assert!(!hit("@contains x", "admin"));
        assert!(hit("@containsWord admin", "the admin page"));
        assert!(hit("@containsWord admin", "admin"));
        assert!(!hit("@containsWord admin", "administrator"));
        assert!(!hit("@containsWord admin", "sysadmin_x"));
        assert!(hit("@containsWord admin", "sysadmin admin!"));
        assert!(hit("@beginsWith /admin", "/admin/x"));
        assert!(!hit("@beginsWith /admin", "/x/admin"));
        assert!(hit("@endsWith .php", "/index.php"));
        assert!(!hit("@endsWith .php", "/index.php.txt"));
        assert!(hit("@strmatch WebZIP", "Mozilla WebZIP/1"));
    }

    #[test]
    fn within_finds_the_value_in_the_list() {
        assert_eq!(
            eval("@within %{tx.methods}", "POST"),
            Some(vec!["POST".into()])
        );
        assert!(!hit("@within %{tx.methods}", "PUT"));
        assert!(hit("!@within %{tx.methods}", "DELETE"));
        assert!(hit("@within GET HEAD", "HEAD"));
    }

    #[test]
    fn numeric_comparisons_with_non_numbers_as_zero() {
        assert!(hit("@eq 5", "5"));
        assert!(hit("@eq 0", "abc"));
        assert!(hit("@eq 12", " 12abc"));
        assert!(hit("@ge %{tx.threshold}", "5"));
        assert!(!hit("@gt %{tx.threshold}", "5"));
        assert!(hit("@gt %{tx.threshold}", "6"));
        assert!(hit("@lt 0", "-3"));
        assert!(hit("@le 3", "3"));
        assert!(!hit("@le 3", "4"));
        assert!(hit("@ge 0", ""));
        assert!(hit("@eq %{tx.unset}", "0"));
    }

    #[test]
    fn ip_match_v4_and_v6_blocks() {
        let spec = "@ipMatch 192.168.1.0/24, 10.0.0.1,2001:db8::/32 ,::1";
        assert!(hit(spec, "192.168.1.77"));
        assert!(!hit(spec, "192.168.2.1"));
        assert!(hit(spec, "10.0.0.1"));
        assert!(!hit(spec, "10.0.0.2"));
        assert!(hit(spec, "2001:db8:1::5"));
        assert!(!hit(spec, "2001:db9::1"));
        assert!(hit(spec, "::1"));
        assert!(hit(spec, "::ffff:10.0.0.1"));
        assert!(!hit(spec, "not an ip"));
        assert!(hit("@ipMatch 0.0.0.0/0", "8.8.8.8"));
        assert!(!hit("@ipMatch 0.0.0.0/0", "2001:db8::1"));
        for bad in [
            "@ipMatch 10.0.0.0/33",
            "@ipMatch 300.1.1.1",
            "@ipMatch ::/129",
            "@ipMatch ",
        ] {
            assert!(
                Operator::parse(
                    bad,
                    &LoadContext {
                        rule_dir: Path::new("/")
                    }
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn ip_match_from_file() {
        let dir = temp_dir("ip");
        std::fs::write(
            dir.join("ips.txt"),
            "# blocked\n203.0.113.0/24\n\n2001:db8::1\n",
        )
        .unwrap();
        let op =
            Operator::parse("@ipMatchFromFile ips.txt", &LoadContext { rule_dir: &dir }).unwrap();
        assert!(op.evaluate(b"203.0.113.9", &ENV).is_some());
        assert!(op.evaluate(b"2001:db8::1", &ENV).is_some());
        assert!(op.evaluate(b"198.51.100.1", &ENV).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn validate_byte_range() {
        assert!(!hit("@validateByteRange 1-255", "abc\u{e9}"));
        assert!(hit("@validateByteRange 1-255", "a\0b"));
        let crs = "@validateByteRange 9,10,13,32-126";
        assert!(!hit(crs, "Hello, World!\r\n\t~"));
        assert!(hit(crs, "tab\x0b"));
        assert!(hit(crs, "caf\u{e9}"));
        assert!(!hit(
            "@validateByteRange 38, 44-46, 48-58, 61, 65-90, 95, 97-122",
            "a=1&b.c"
        ));
        for bad in [
            "@validateByteRange 300",
            "@validateByteRange a-b",
            "@validateByteRange 9-1",
            "@validateByteRange ",
        ] {
            assert!(
                Operator::parse(
                    bad,
                    &LoadContext {
                        rule_dir: Path::new("/")
                    }
                )
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn validate_url_encoding() {
        assert!(!hit("@validateUrlEncoding", "a%20b%7e"));
        assert!(!hit("@validateUrlEncoding", "plain"));
        assert!(hit("@validateUrlEncoding", "%4"));
        assert!(hit("@validateUrlEncoding", "%zz"));
        assert!(hit("@validateUrlEncoding", "100%"));
        assert!(hit("@validateUrlEncoding", "%41%g1"));
    }

    #[test]
    fn validate_utf8_encoding() {
        let v = |bytes: &[u8]| op("@validateUtf8Encoding").evaluate(bytes, &ENV).is_some();
        assert!(!v("café ☕ 😀".as_bytes()));
        assert!(v(b"\xc3"));
        assert!(v(b"\xc0\xaf"));
        assert!(v(b"\xed\xa0\x80"));
        assert!(v(b"\xf4\x90\x80\x80"));
        assert!(v(b"\xff"));
    }

    #[test]
    fn detect_sqli_captures_the_fingerprint() {
        assert_eq!(
            eval("@detectSQLi", "' OR '1'='1"),
            Some(vec!["s&sos".into()])
        );
        assert!(hit("@detectSQLi", "1 UNION SELECT password FROM users"));
        assert!(!hit("@detectSQLi", "O'Brien"));
        assert!(hit("!@detectSQLi", "hello"));
    }

    #[test]
    fn detect_xss() {
        assert!(hit("@detectXSS", "<script>alert(1)</script>"));
        assert!(hit("@detectXSS", "<img src=x onerror=alert(1)>"));
        assert!(!hit("@detectXSS", "I <3 rust"));
    }

    #[test]
    fn unconditional_and_no_match() {
        assert_eq!(eval("@unconditionalMatch", "v"), Some(vec!["v".into()]));
        assert!(!hit("@noMatch", "v"));
        assert!(hit("!@noMatch", "v"));
        assert!(!hit("!@unconditionalMatch", "v"));
    }
}
