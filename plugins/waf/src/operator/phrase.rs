//! `@pm` and `@pmFromFile`: case-insensitive multi-phrase search with Aho-Corasick.

use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Builds the automaton for `phrases` (ASCII case-insensitive, leftmost-first match, as
/// ModSecurity reports the first phrase it finds).
pub(super) fn build(phrases: &[Vec<u8>]) -> Result<AhoCorasick, String> {
    if phrases.is_empty() {
        return Err("@pm needs at least one phrase".into());
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(phrases)
        .map_err(|e| format!("@pm: {e}"))
}

/// The phrases of an `@pm` argument: whitespace-separated, after libmodsecurity's content
/// parsing (surrounding double quotes dropped, `|41 42|` hex bytes decoded, `\` escaping the
/// next character).
pub(super) fn from_argument(arg: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut s = arg.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s = &s[1..s.len() - 1];
    }
    let bytes = s.as_bytes();
    let mut content = Vec::with_capacity(bytes.len());
    let mut hex = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'|' {
            hex = !hex;
            i += 1;
        } else if hex {
            if b.is_ascii_whitespace() {
                i += 1;
            } else if bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.is_ascii_hexdigit() {
                let pair = std::str::from_utf8(&bytes[i..i + 2]).unwrap_or("00");
                content.push(u8::from_str_radix(pair, 16).unwrap_or(0));
                i += 2;
            } else {
                return Err(format!("@pm: invalid hex content in {arg:?}"));
            }
        } else if b == b'\\' && i + 1 < bytes.len() {
            content.push(bytes[i + 1]);
            i += 2;
        } else {
            content.push(b);
            i += 1;
        }
    }
    if hex {
        return Err(format!("@pm: unterminated hex content in {arg:?}"));
    }
    Ok(content
        .split(|b| b.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The phrases of `@pmFromFile a.data b.data`: one per line, blank lines and `#` comments
/// skipped; relative paths are taken from `rule_dir`.
pub(super) fn from_files(arg: &str, rule_dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut phrases = Vec::new();
    for name in arg.split_whitespace() {
        if name.starts_with("http://") || name.starts_with("https://") {
            return Err(format!("unsupported: phrases from a URL ({name})"));
        }
        let path = rule_dir.join(name);
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            phrases.push(line.to_vec());
        }
    }
    Ok(phrases)
}
