//! ModSecurity transformations (`t:name`): byte-to-byte functions applied to a variable's value
//! before the operator sees it, with libmodsecurity v3's semantics.
//!
//! Every transformation returns [`Cow::Borrowed`] when it leaves the value unchanged, so a chain
//! of transformations over ordinary input allocates nothing.

use std::borrow::Cow;

mod decode;
mod digest;
mod path;
mod text;

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
            Transform::Lowercase => text::lowercase(input),
            Transform::Uppercase => text::uppercase(input),
            Transform::UrlDecode => decode::url(input, false),
            Transform::UrlDecodeUni => decode::url(input, true),
            Transform::HtmlEntityDecode => decode::html_entities(input),
            Transform::JsDecode => decode::js(input),
            Transform::CssDecode => decode::css(input),
            Transform::CmdLine => text::cmd_line(input),
            Transform::CompressWhitespace => text::compress_whitespace(input),
            Transform::RemoveWhitespace => text::remove_whitespace(input),
            Transform::RemoveNulls => text::remove_nulls(input),
            Transform::ReplaceNulls => text::replace_nulls(input),
            Transform::ReplaceComments => text::replace_comments(input),
            Transform::RemoveComments => text::remove_comments(input),
            Transform::NormalizePath => path::normalize(input, false),
            Transform::NormalizePathWin => path::normalize(input, true),
            Transform::Base64Decode => decode::base64(input, false),
            Transform::Base64DecodeExt => decode::base64(input, true),
            Transform::HexDecode => decode::hex(input),
            Transform::Utf8ToUnicode => decode::utf8_to_unicode(input),
            Transform::Length => digest::length(input),
            Transform::Sha1 => digest::sha1(input),
            Transform::Md5 => digest::md5(input),
            Transform::Trim => Cow::Borrowed(text::trim_right(text::trim_left(input))),
            Transform::TrimLeft => Cow::Borrowed(text::trim_left(input)),
            Transform::TrimRight => Cow::Borrowed(text::trim_right(input)),
            Transform::EscapeSeqDecode => decode::escape_sequences(input),
        }
    }
}

/// `out` as an owned value, or the input borrowed when the transformation changed nothing.
fn if_changed(input: &[u8], out: Vec<u8>) -> Cow<'_, [u8]> {
    if out == input {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(out)
    }
}

/// C's `isspace` in the "C" locale: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The non-breaking space (Latin-1 0xA0) that some transformations treat as whitespace.
const NBSP: u8 = 0xa0;
