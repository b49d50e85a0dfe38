//! Transformations that edit text without decoding it: case, whitespace, NULs, comments,
//! command-line normalisation and trimming.

use std::borrow::Cow;

use super::{NBSP, if_changed, is_space};

/// `lowercase`: ASCII letters to lower case.
pub(super) fn lowercase(input: &[u8]) -> Cow<'_, [u8]> {
    if input.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(input.to_ascii_lowercase())
    } else {
        Cow::Borrowed(input)
    }
}

/// `uppercase`: ASCII letters to upper case.
pub(super) fn uppercase(input: &[u8]) -> Cow<'_, [u8]> {
    if input.iter().any(u8::is_ascii_lowercase) {
        Cow::Owned(input.to_ascii_uppercase())
    } else {
        Cow::Borrowed(input)
    }
}

/// `cmdLine`: deletes `\ " ' ^`, turns runs of `space , ; \t \r \n` into one space, drops a
/// space before `/` or `(`, and lowercases the rest (libmodsecurity's `CmdLine`).
pub(super) fn cmd_line(input: &[u8]) -> Cow<'_, [u8]> {
    let interesting = |b: &u8| {
        b.is_ascii_uppercase()
            || matches!(
                b,
                b'"' | b'\'' | b'\\' | b'^' | b' ' | b',' | b';' | b'\t' | b'\r' | b'\n'
            )
    };
    if !input.iter().any(interesting) {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut space = false;
    for &b in input {
        match b {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            _ => {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
        }
    }
    if_changed(input, out)
}

/// Whitespace for `compressWhitespace` and `removeWhitespace`: `isspace` plus NBSP.
fn is_space_or_nbsp(b: u8) -> bool {
    is_space(b) || b == NBSP
}

/// `compressWhitespace`: each run of whitespace (NBSP included) becomes one space.
pub(super) fn compress_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    let needed = input.iter().enumerate().any(|(i, &b)| {
        is_space_or_nbsp(b) && (b != b' ' || input.get(i + 1).is_some_and(|&n| is_space_or_nbsp(n)))
    });
    if !needed {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut in_space = false;
    for &b in input {
        if is_space_or_nbsp(b) {
            if !in_space {
                out.push(b' ');
                in_space = true;
            }
        } else {
            out.push(b);
            in_space = false;
        }
    }
    Cow::Owned(out)
}

/// `removeWhitespace`: drops every whitespace byte, NBSP included.
pub(super) fn remove_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.iter().any(|&b| is_space_or_nbsp(b)) {
        return Cow::Borrowed(input);
    }
    Cow::Owned(
        input
            .iter()
            .copied()
            .filter(|&b| !is_space_or_nbsp(b))
            .collect(),
    )
}

/// `removeNulls`: drops NUL bytes.
pub(super) fn remove_nulls(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&0) {
        return Cow::Borrowed(input);
    }
    Cow::Owned(input.iter().copied().filter(|&b| b != 0).collect())
}

/// `replaceNulls`: NUL bytes become spaces.
pub(super) fn replace_nulls(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&0) {
        return Cow::Borrowed(input);
    }
    Cow::Owned(
        input
            .iter()
            .map(|&b| if b == 0 { b' ' } else { b })
            .collect(),
    )
}

/// `replaceComments`: each `/* ... */` becomes one space; an unterminated comment runs to the
/// end and also becomes one space.
pub(super) fn replace_comments(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.windows(2).any(|w| w == b"/*") {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut in_comment = false;
    let mut i = 0;
    while i < input.len() {
        if !in_comment {
            if input[i..].starts_with(b"/*") {
                in_comment = true;
                i += 2;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i..].starts_with(b"*/") {
            in_comment = false;
            out.push(b' ');
            i += 2;
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
    Cow::Owned(out)
}

/// `removeCommentsChar`: the comment markers `/*`, `*/`, `<!--`, `-->`, `--` and `#` are
/// dropped; the text around and between them stays (ModSecurity's semantics).
pub(super) fn remove_comments_char(input: &[u8]) -> Cow<'_, [u8]> {
    let needed = input.contains(&b'#')
        || input
            .windows(2)
            .any(|w| w == b"/*" || w == b"*/" || w == b"--" || w == b"<!");
    if !needed {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        if rest.starts_with(b"/*") || rest.starts_with(b"*/") {
            i += 2;
        } else if rest.starts_with(b"<!--") {
            i += 4;
        } else if rest.starts_with(b"-->") {
            i += 3;
        } else if rest.starts_with(b"--") {
            i += 2;
        } else if rest[0] == b'#' {
            i += 1;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    if_changed(input, out)
}

/// `removeComments`: drops C (`/* */`) and HTML (`<!-- -->`) comments, and everything from an
/// SQL `--` or a shell `#` to the end; an unterminated block comment leaves one space.
pub(super) fn remove_comments(input: &[u8]) -> Cow<'_, [u8]> {
    let needed = input.contains(&b'#')
        || input
            .windows(2)
            .any(|w| w == b"/*" || w == b"--" || w == b"<!");
    if !needed {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut in_comment = false;
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        if !in_comment {
            if rest.starts_with(b"/*") {
                in_comment = true;
                i += 2;
            } else if rest.starts_with(b"<!--") {
                in_comment = true;
                i += 4;
            } else if rest.starts_with(b"--") || rest[0] == b'#' {
                break;
            } else {
                out.push(rest[0]);
                i += 1;
            }
        } else if rest.starts_with(b"*/") {
            in_comment = false;
            i += 2;
        } else if rest.starts_with(b"-->") {
            in_comment = false;
            i += 3;
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
    if_changed(input, out)
}

/// `trimLeft`: the input without its leading whitespace.
pub(super) fn trim_left(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(input.len());
    &input[start..]
}

/// `trimRight`: the input without its trailing whitespace.
pub(super) fn trim_right(input: &[u8]) -> &[u8] {
    let end = input
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(0, |p| p + 1);
    &input[..end]
}
