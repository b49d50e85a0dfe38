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
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `word` occurs in `value` with no word character (`[A-Za-z0-9_]`) touching it.
fn contains_word(value: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    value.windows(word.len()).enumerate().any(|(at, w)| {
        w == word
            && (at == 0 || !is_word(&value[at - 1]))
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
