//! `@rx`: PCRE patterns as ModSecurity writes them, translated where that is cheap and safe to
//! the `regex` crate's syntax, and compiled with ModSecurity's flags (`PCRE_DOTALL |
//! PCRE_MULTILINE`) over bytes.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::bytes::{Regex, RegexBuilder};

/// The most compiled program one pattern may take (the crate's default is 10 MiB).
const SIZE_LIMIT: usize = 32 << 20;
/// The lazy DFA cache per pattern: the full CRS has a few hundred of them.
const DFA_SIZE_LIMIT: usize = 1 << 20;
/// Macro-expanded patterns kept compiled per operator.
const DYNAMIC_CACHE: usize = 32;

/// Translates `pattern` and compiles it. Matching is on bytes, `.` matches a newline and `^`/`$`
/// match at line boundaries, as in ModSecurity. Character classes are ASCII as in PCRE without
/// UTF mode; a pattern that needs Unicode (`\p{..}`, non-ASCII in a class) is compiled in
/// Unicode mode instead.
pub(super) fn compile(pattern: &str) -> Result<Regex, String> {
    let build = |unicode: bool| {
        RegexBuilder::new(&translate(pattern, !unicode)?)
            .unicode(unicode)
            .dot_matches_new_line(true)
            .multi_line(true)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regex: {e}"))
    };
    build(false).or_else(|e| {
        if e.starts_with("unsupported") {
            Err(e)
        } else {
            build(true)
        }
    })
}

/// Translates PCRE syntax to the `regex` crate's: `\Q..\E` quoting, possessive quantifiers and
/// atomic groups (to their plain forms), `(?#..)` comments, octal escapes, one-digit `\xH`,
/// `\h`, `\e`, `\Z`, and PCRE's literal `{`, and `[`, `&`, `~` and `--` inside classes.
/// Lookarounds, backreferences, recursion and conditionals are refused. With `bytes`, a
/// non-ASCII character becomes its UTF-8 bytes, each matched on its own as PCRE does without
/// UTF mode (so `[^´]` excludes the bytes of `´`).
pub(super) fn translate(p: &str, bytes: bool) -> Result<String, String> {
    let unsupported = |what: &str| Err(format!("unsupported regex: {what}"));
    let c: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    // Inside a character class: whether a byte has been emitted after the `[` / `[^`.
    let mut class: Option<bool> = None;
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' {
            let Some(&e) = c.get(i + 1) else {
                return Err("invalid regex: trailing backslash".into());
            };
            i += 2;
            let in_class = class.is_some();
            if class.is_some() {
                class = Some(true);
            }
            match e {
                'Q' => {
                    let end = (i..c.len().saturating_sub(1))
                        .find(|&k| c[k] == '\\' && c[k + 1] == 'E')
                        .unwrap_or(c.len());
                    for &q in &c[i..end] {
                        push_literal(&mut out, q, bytes);
                    }
                    i = (end + 2).min(c.len());
                }
                'E' => {}
                '1'..='9' if !in_class => return unsupported("backreference"),
                'g' | 'k' => return unsupported("backreference"),
                '0'..='7' => {
                    let start = i - 1;
                    let mut end = start + 1;
                    while end < c.len() && end < start + 3 && matches!(c[end], '0'..='7') {
                        end += 1;
                    }
                    let digits: String = c[start..end].iter().collect();
                    let value = u32::from_str_radix(&digits, 8).unwrap_or(0) & 0xff;
                    out.push_str(&format!("\\x{value:02X}"));
                    i = end;
                }
                '8' | '9' => out.push(e),
                'x' | 'p' | 'P' if c.get(i) == Some(&'{') => {
                    let end = (i..c.len())
                        .find(|&k| c[k] == '}')
                        .ok_or("invalid regex: {")?;
                    out.push('\\');
                    out.push(e);
                    out.extend(&c[i..=end]);
                    i = end + 1;
                }
                'x' => {
                    let n = c[i..]
                        .iter()
                        .take(2)
                        .take_while(|h| h.is_ascii_hexdigit())
                        .count();
                    let digits: String = c[i..i + n].iter().collect();
                    let value = u32::from_str_radix(&digits, 16).unwrap_or(0);
                    out.push_str(&format!("\\x{value:02X}"));
                    i += n;
                }
                'h' if in_class => out.push_str("\\t \\xA0"),
                'h' => out.push_str("[\\t \\xA0]"),
                'H' if !in_class => out.push_str("[^\\t \\xA0]"),
                'e' => out.push_str("\\x1B"),
                'b' if in_class => out.push_str("\\x08"),
                'Z' => out.push_str("(?:\\n?\\z)"),
                'N' if !in_class => out.push_str("[^\\n]"),
                'R' if !in_class => out.push_str("(?:\\r\\n|[\\n\\x0B\\x0C\\r\\x85])"),
                'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'n' | 'r' | 't' | 'f' | 'v' | 'a' | 'p'
                | 'P' => {
                    out.push('\\');
                    out.push(e);
                }
                'A' | 'z' | 'b' | 'B' if !in_class => {
                    out.push('\\');
                    out.push(e);
                }
                _ if e.is_ascii_alphanumeric() => {
                    return unsupported(&format!("escape \\{e}"));
                }
                _ => push_literal(&mut out, e, bytes),
            }
            continue;
        }
        if let Some(started) = class {
            match ch {
                ']' if started => {
                    out.push(']');
                    class = None;
                }
                '[' if c.get(i + 1) == Some(&':') => {
                    let Some(end) = (i + 2..c.len().saturating_sub(1))
                        .find(|&k| c[k] == ':' && c[k + 1] == ']')
                    else {
                        return Err("invalid regex: unterminated POSIX class".into());
                    };
                    out.extend(&c[i..end + 2]);
                    i = end + 1;
                    class = Some(true);
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(ch);
                    class = Some(true);
                }
                '-' if c.get(i + 1) == Some(&'-') => {
                    out.push_str("\\-");
                    class = Some(true);
                }
                _ => {
                    push_char(&mut out, ch, bytes);
                    class = Some(true);
                }
            }
            i += 1;
            continue;
        }
        match ch {
            '[' => {
                out.push('[');
                i += 1;
                if c.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class = Some(false);
                continue;
            }
            '(' if c.get(i + 1) == Some(&'?') => {
                i = group(&c, i, &mut out)?;
                continue;
            }
            '*' | '+' | '?' => {
                out.push(ch);
                i += 1;
                i = quantifier_suffix(&c, i, &mut out);
                continue;
            }
            '{' => {
                if let Some(end) = counted_repetition(&c, i) {
                    out.extend(&c[i..end]);
                    i = quantifier_suffix(&c, end, &mut out);
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
                continue;
            }
            '}' => out.push_str("\\}"),
            _ => push_char(&mut out, ch, bytes),
        }
        i += 1;
    }
    if class.is_some() {
        return Err("invalid regex: unterminated character class".into());
    }
    Ok(out)
}

/// Pushes `ch` so that it matches literally.
fn push_literal(out: &mut String, ch: char, bytes: bool) {
    if ch == ' ' {
        out.push_str("\\x20");
    } else if regex_syntax_meta(ch) {
        out.push('\\');
        out.push(ch);
    } else {
        push_char(out, ch, bytes);
    }
}

/// Pushes a character that needs no escaping: a non-ASCII one as its UTF-8 bytes when
/// matching `bytes`.
fn push_char(out: &mut String, ch: char, bytes: bool) {
    if bytes && !ch.is_ascii() {
        for b in ch.to_string().bytes() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    } else {
        out.push(ch);
    }
}

/// The characters the `regex` crate treats as syntax.
fn regex_syntax_meta(ch: char) -> bool {
    "\\.+*?()|[]{}^$#&-~".contains(ch)
}

/// After a quantifier at `i`: keeps a lazy `?`, drops a possessive `+`. Returns the next index.
fn quantifier_suffix(c: &[char], i: usize, out: &mut String) -> usize {
    match c.get(i) {
        Some('?') => {
            out.push('?');
            i + 1
        }
        Some('+') => i + 1,
        _ => i,
    }
}

/// If `c[i..]` starts with `{n}`, `{n,}` or `{n,m}`, the index after its `}`.
fn counted_repetition(c: &[char], i: usize) -> Option<usize> {
    let mut k = i + 1;
    let digits = |k: &mut usize| {
        let start = *k;
        while c.get(*k).is_some_and(char::is_ascii_digit) {
            *k += 1;
        }
        *k > start
    };
    if !digits(&mut k) {
        return None;
    }
    if c.get(k) == Some(&',') {
        k += 1;
        digits(&mut k);
    }
    (c.get(k) == Some(&'}')).then_some(k + 1)
}

/// Translates the `(?` construct at `i`; returns the index after what it consumed.
fn group(c: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let unsupported = |what: &str| Err(format!("unsupported regex: {what}"));
    let rest: String = c[i + 2..c.len().min(i + 5)].iter().collect();
    if rest.starts_with('=') || rest.starts_with('!') {
        return unsupported("lookahead");
    }
    if rest.starts_with("<=") || rest.starts_with("<!") {
        return unsupported("lookbehind");
    }
    if rest.starts_with('>') {
        out.push_str("(?:");
        return Ok(i + 3);
    }
    if rest.starts_with('#') {
        let end = (i..c.len()).find(|&k| c[k] == ')').unwrap_or(c.len());
        return Ok(end + 1);
    }
    if rest.starts_with('|') {
        return unsupported("branch reset group");
    }
    if rest.starts_with('(') {
        return unsupported("conditional group");
    }
    if rest.starts_with('R')
        || rest.starts_with('&')
        || rest.starts_with("P>")
        || c.get(i + 2).is_some_and(char::is_ascii_digit)
        || matches!(c.get(i + 2), Some('+' | '-')) && c.get(i + 3).is_some_and(char::is_ascii_digit)
    {
        return unsupported("recursion");
    }
    if rest.starts_with('\'') {
        let end = (i + 3..c.len())
            .find(|&k| c[k] == '\'')
            .ok_or("invalid regex: group name")?;
        out.push_str("(?P<");
        out.extend(&c[i + 3..end]);
        out.push('>');
        return Ok(end + 1);
    }
    out.push_str("(?");
    Ok(i + 2)
}

/// An `@rx` pattern: compiled at load, or, when it holds macros, per expansion (cached).
pub(super) enum Pattern {
    /// No macro: compiled once.
    Static(Regex),
    /// With macros: compiled for each distinct expansion.
    Dynamic {
        /// The pattern as written, macros included.
        source: String,
        /// Compiled expansions (`None`: it did not compile and never matches).
        cache: Mutex<HashMap<String, Option<Regex>>>,
    },
}

impl Pattern {
    /// Parses the operator argument.
    pub(super) fn new(source: &str) -> Result<Pattern, String> {
        if source.contains("%{") {
            // Check the syntax around the macros now, with each macro as a plain word.
            translate(source, true)?;
            Ok(Pattern::Dynamic {
                source: source.to_string(),
                cache: Mutex::new(HashMap::new()),
            })
        } else {
            compile(source).map(Pattern::Static)
        }
    }

    /// Runs `f` with the regex for this evaluation (after expanding macros through `expand`).
    pub(super) fn with<T>(
        &self,
        expand: impl FnOnce(&str) -> String,
        f: impl FnOnce(&Regex) -> Option<T>,
    ) -> Option<T> {
        match self {
            Pattern::Static(re) => f(re),
            Pattern::Dynamic { source, cache } => {
                let expanded = expand(source);
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                if !cache.contains_key(&expanded) {
                    if cache.len() >= DYNAMIC_CACHE {
                        cache.clear();
                    }
                    cache.insert(expanded.clone(), compile(&expanded).ok());
                }
                cache.get(&expanded)?.as_ref().and_then(f)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate_bytes(pattern: &str) -> Result<String, String> {
        translate(pattern, true)
    }

    fn matches(pattern: &str, value: &str) -> bool {
        compile(pattern).unwrap().is_match(value.as_bytes())
    }

    #[test]
    fn dot_matches_newline_and_anchors_match_lines() {
        assert!(matches("a.b", "a\nb"));
        assert!(matches("^b$", "a\nb\nc"));
    }

    #[test]
    fn classes_and_case_folding_are_ascii_over_bytes() {
        assert!(matches(r"^\w+$", "abc_1"));
        assert!(!matches(r"^\w+$", "é"));
        assert!(matches(r"[\x80-\xff]", "é"));
        assert!(matches("(?i)select", "SeLeCt"));
        assert!(matches("(?i:union)", "UNION"));
        assert!(compile(r"\xff").unwrap().is_match(b"\xff"));
    }

    #[test]
    fn posix_classes_work() {
        assert!(matches("^[[:alpha:]]+$", "abcXYZ"));
        assert!(!matches("^[[:alpha:]]+$", "abc1"));
        assert!(matches("[[:digit:][:space:]]", " "));
    }

    #[test]
    fn pcre_only_syntax_is_translated() {
        assert_eq!(translate_bytes(r"a++b*+c?+d{2}+").unwrap(), "a+b*c?d{2}");
        assert_eq!(translate_bytes("(?>ab|a)c").unwrap(), "(?:ab|a)c");
        assert_eq!(translate_bytes(r"\Qa.b\E+").unwrap(), r"a\.b+");
        assert_eq!(translate_bytes("a(?#comment)b").unwrap(), "ab");
        assert_eq!(translate_bytes(r"\x9\0\012").unwrap(), r"\x09\x00\x0A");
        assert_eq!(translate_bytes(r"\e\h").unwrap(), r"\x1B[\t \xA0]");
        assert_eq!(translate_bytes(r"[\h\b]").unwrap(), r"[\t \xA0\x08]");
        assert_eq!(translate_bytes("a{b}").unwrap(), r"a\{b\}");
        assert_eq!(translate_bytes("a{2,}b{,3}").unwrap(), r"a{2,}b\{,3\}");
        assert_eq!(translate_bytes("[a[&&~-]").unwrap(), r"[a\[\&\&\~-]");
        assert_eq!(translate_bytes("[a--z]").unwrap(), r"[a\--z]");
        assert_eq!(translate_bytes("(?'n'x)").unwrap(), "(?P<n>x)");
        assert_eq!(translate_bytes(r"\/\'\<").unwrap(), "/'<");
        assert_eq!(translate_bytes(r"\x{41}\p{L}").unwrap(), r"\x{41}\p{L}");
        assert_eq!(translate_bytes(r"a+?b").unwrap(), "a+?b");
        assert!(matches(r"^a\Z", "a\n"));
        assert!(matches(r"[]a]", "]"));
        assert!(matches(r"[^]a]", "b"));
    }

    #[test]
    fn lookarounds_backreferences_and_recursion_are_refused() {
        for p in [
            "a(?=b)",
            "a(?!b)",
            "(?<=a)b",
            "(?<!a)b",
            r"(a)\1",
            r"(?<n>a)\k<n>",
            "(?R)",
            "(?1)",
            "(?|a|b)",
            "(?(1)a|b)",
        ] {
            let err = compile(p).unwrap_err();
            assert!(err.starts_with("unsupported regex:"), "{p}: {err}");
        }
        assert!(compile("a(b").unwrap_err().starts_with("invalid regex:"));
        assert!(compile("[ab").unwrap_err().starts_with("invalid regex:"));
    }

    #[test]
    fn non_ascii_characters_are_matched_as_bytes() {
        // As PCRE without UTF mode: a class lists the bytes of `´` (C2 B4).
        assert_eq!(translate_bytes("[^´]").unwrap(), r"[^\xC2\xB4]");
        assert!(matches("[é]", "é"));
        assert!(!compile("^[^´]+$").unwrap().is_match(b"a\xc2b"));
        assert!(compile("[^´]").unwrap().is_match(b"\xff"));
        assert!(matches("caf[é]", "café"));
    }

    #[test]
    fn unicode_properties_fall_back_to_unicode_mode() {
        assert!(matches(r"\p{Greek}", "α"));
        assert!(matches(r"\x{3b1}é", "αé"));
    }

    #[test]
    fn macro_patterns_compile_per_expansion() {
        let p = Pattern::new("^%{tx.x}$").unwrap();
        let found = |value: &str, expansion: &str| {
            p.with(
                |s| s.replace("%{tx.x}", expansion),
                |re| re.find(value.as_bytes()).map(|m| m.end()),
            )
        };
        assert_eq!(found("abc", "abc"), Some(3));
        assert_eq!(found("abc", "ab"), None);
        assert_eq!(found("abc", "("), None);
    }

    #[test]
    fn arbitrary_patterns_do_not_panic() {
        let alphabet: Vec<char> = r"\\QEx{}[]()?:<>=!'#|^$*+-&~,0123a\zZhbp"
            .chars()
            .chain(['é'])
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..20_000 {
            let pattern: String = (0..n % 12)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x >> 11) as usize % alphabet.len()]
                })
                .collect();
            let _ = compile(&pattern);
        }
    }

    /// Every `@rx` pattern of the CRS rule files under `dir`, one per rule.
    fn crs_patterns(dir: &std::path::Path) -> Vec<String> {
        let mut patterns = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        {
            let text = std::fs::read_to_string(file).unwrap().replace("\\\n", " ");
            for line in text.lines() {
                let Some(at) = line.find("\"@rx ").or_else(|| line.find("\"!@rx ")) else {
                    continue;
                };
                let start = at + line[at..].find("@rx ").unwrap() + 4;
                let rest = &line.as_bytes()[start..];
                let mut end = 0;
                while end < rest.len() && rest[end] != b'"' {
                    end += if rest[end] == b'\\' { 2 } else { 1 };
                }
                patterns.push(line[start..start + end.min(rest.len())].replace("\\\"", "\""));
            }
        }
        patterns
    }

    /// Compiles every `@rx` of Debian's CRS (`modsecurity-crs`) when it is installed and
    /// prints how many compile; most must.
    #[test]
    fn most_crs_regexes_compile() {
        let dir = std::path::Path::new("/usr/share/modsecurity-crs/rules");
        if !dir.is_dir() {
            eprintln!("CRS not installed at {}: skipped", dir.display());
            return;
        }
        let patterns = crs_patterns(dir);
        assert!(patterns.len() > 100, "only {} @rx found", patterns.len());
        let mut failed = 0;
        let started = std::time::Instant::now();
        for p in &patterns {
            if let Err(e) = compile(p) {
                failed += 1;
                let shown: String = p.chars().take(100).collect();
                eprintln!("{e}: {shown}");
            }
        }
        let ok = patterns.len() - failed;
        eprintln!(
            "CRS @rx: {ok} of {} compile, {failed} fail ({:?})",
            patterns.len(),
            started.elapsed()
        );
        assert!(
            ok * 100 >= patterns.len() * 90,
            "{ok} of {} compile",
            patterns.len()
        );
    }
}
