//! Decoding transformations: URL, HTML entities, JavaScript, CSS and C escapes, base64, hex,
//! and `utf8toUnicode`.

use std::borrow::Cow;

use super::{NBSP, is_space};

/// The value of one hex digit (the caller checked it is one).
fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Two hex digits as one byte (libmodsecurity's `x2c`).
fn x2c(hi: u8, lo: u8) -> u8 {
    (hex_val(hi) << 4) | hex_val(lo)
}

/// Whether `input[at..at + n]` exists and is all hex digits.
fn hex_run(input: &[u8], at: usize, n: usize) -> bool {
    input
        .get(at..at + n)
        .is_some_and(|s| s.iter().all(u8::is_ascii_hexdigit))
}

/// The byte an IIS `%uHHHH` / JS `\uHHHH` escape decodes to: its low byte, plus 0x20 for
/// full-width ASCII (U+FF01..U+FF5E), as libmodsecurity does without a unicode map.
fn unicode_low_byte(h: &[u8]) -> u8 {
    let low = x2c(h[2], h[3]);
    let full_width = matches!(h[0], b'f' | b'F') && matches!(h[1], b'f' | b'F');
    if full_width && low > 0 && low < 0x5f {
        low + 0x20
    } else {
        low
    }
}

/// `urlDecode` (and with `uni`, `urlDecodeUni`): `%XX` to a byte and `+` to a space; an
/// invalid or truncated escape is kept as it is. With `uni`, `%uHHHH` becomes one byte (see
/// [`unicode_low_byte`]) and an invalid `%u` is kept.
pub(super) fn url(input: &[u8], uni: bool) -> Cow<'_, [u8]> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' if uni && matches!(input.get(i + 1), Some(b'u' | b'U')) => {
                if hex_run(input, i + 2, 4) {
                    out.push(unicode_low_byte(&input[i + 2..i + 6]));
                    i += 6;
                } else {
                    out.extend_from_slice(&input[i..i + 2]);
                    i += 2;
                }
            }
            b'%' if hex_run(input, i + 1, 2) => {
                out.push(x2c(input[i + 1], input[i + 2]));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The number `digits` spell in `radix`, as the byte C's `(unsigned char)strtol(...)` gives.
fn numeric_byte(digits: &[u8], radix: u64) -> u8 {
    let mut n: u64 = 0;
    for &d in digits {
        n = n
            .saturating_mul(radix)
            .saturating_add(u64::from(hex_val(d)));
    }
    n.min(i64::MAX as u64) as u8
}

/// `htmlEntityDecode`: `&#DDD;`, `&#xHH;` (one byte: the value's low byte) and the named
/// entities `quot amp lt gt nbsp`; the `;` is optional and anything else is kept as it is.
pub(super) fn html_entities(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'&') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'&'
            && let Some((byte, next)) = html_entity(input, i + 1)
        {
            out.push(byte);
            i = if input.get(next) == Some(&b';') {
                next + 1
            } else {
                next
            };
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// The entity whose name starts at `j` (just after `&`): its byte and where it ends.
fn html_entity(input: &[u8], j: usize) -> Option<(u8, usize)> {
    let run = |from: usize, pred: fn(&u8) -> bool| {
        from + input
            .get(from..)
            .map_or(0, |s| s.iter().take_while(|b| pred(b)).count())
    };
    if input.get(j) == Some(&b'#') {
        if matches!(input.get(j + 1), Some(b'x' | b'X')) {
            let end = run(j + 2, u8::is_ascii_hexdigit);
            (end > j + 2).then(|| (numeric_byte(&input[j + 2..end], 16), end))
        } else {
            let end = run(j + 1, u8::is_ascii_digit);
            (end > j + 1).then(|| (numeric_byte(&input[j + 1..end], 10), end))
        }
    } else {
        let end = run(j, u8::is_ascii_alphanumeric);
        let byte = match input[j..end].to_ascii_lowercase().as_slice() {
            b"quot" => b'"',
            b"amp" => b'&',
            b"lt" => b'<',
            b"gt" => b'>',
            b"nbsp" => NBSP,
            _ => return None,
        };
        Some((byte, end))
    }
}

/// The C escape letters `\a \b \f \n \r \t \v` decode to.
fn c_escape(b: u8) -> Option<u8> {
    Some(match b {
        b'a' => 0x07,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        _ => return None,
    })
}

/// Up to three octal digits from `at`: how many, and the byte they give.
fn octal(input: &[u8], at: usize, js: bool) -> (usize, u8) {
    let mut n = input[at..]
        .iter()
        .take(3)
        .take_while(|b| matches!(b, b'0'..=b'7'))
        .count();
    // JavaScript: `\OOO` stays one byte (at most \377).
    if js && n == 3 && input[at] > b'3' {
        n = 2;
    }
    let value = input[at..at + n]
        .iter()
        .fold(0u32, |v, &d| v * 8 + u32::from(d - b'0'));
    (n, value as u8)
}

/// `jsDecode`: `\uHHHH` (low byte, full-width ASCII mapped), `\xHH`, `\OOO`, the C letter
/// escapes, and `\c` as `c` for any other character; a trailing backslash is kept.
pub(super) fn js(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'\\') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 == input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let next = input[i + 1];
        if next == b'u' && hex_run(input, i + 2, 4) {
            out.push(unicode_low_byte(&input[i + 2..i + 6]));
            i += 6;
        } else if next == b'x' && hex_run(input, i + 2, 2) {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if matches!(next, b'0'..=b'7') {
            let (n, byte) = octal(input, i + 1, true);
            out.push(byte);
            i += 1 + n;
        } else {
            out.push(c_escape(next).unwrap_or(next));
            i += 2;
        }
    }
    Cow::Owned(out)
}

/// `cssDecode`: `\` and 1 to 6 hex digits (the last two give the byte; full-width ASCII
/// mapped) with one following whitespace swallowed, `\` + newline removed, `\c` as `c`, and a
/// trailing backslash removed.
pub(super) fn css(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'\\') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i == input.len() {
            break;
        }
        let j = input[i..]
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if j == 0 {
            if input[i] != b'\n' {
                out.push(input[i]);
            }
            i += 1;
            continue;
        }
        let h = &input[i..i + j];
        let mut byte = if j == 1 {
            hex_val(h[0])
        } else {
            x2c(h[j - 2], h[j - 1])
        };
        let full_check = match j {
            4 => true,
            5 => h[0] == b'0',
            6 => h[0] == b'0' && h[1] == b'0',
            _ => false,
        };
        if full_check
            && byte > 0
            && byte < 0x5f
            && matches!(h[j - 3], b'f' | b'F')
            && matches!(h[j - 4], b'f' | b'F')
        {
            byte += 0x20;
        }
        out.push(byte);
        i += j;
        if input.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// `escapeSeqDecode`: ANSI C escapes `\a \b \f \n \r \t \v \\ \? \' \"`, `\xHH` and `\OOO`;
/// any other escaped character loses its backslash.
pub(super) fn escape_sequences(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'\\') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 == input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let next = input[i + 1];
        if let Some(b) = c_escape(next) {
            out.push(b);
            i += 2;
        } else if matches!(next, b'\\' | b'?' | b'\'' | b'"') {
            out.push(next);
            i += 2;
        } else if matches!(next, b'x' | b'X') && hex_run(input, i + 2, 2) {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if matches!(next, b'0'..=b'7') {
            let (n, byte) = octal(input, i + 1, false);
            out.push(byte);
            i += 1 + n;
        } else {
            out.push(next);
            i += 2;
        }
    }
    Cow::Owned(out)
}

/// The 6-bit value of a base64 character (standard alphabet), if it is one.
fn base64_val(b: u8) -> Option<u32> {
    Some(u32::from(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// `base64Decode`: decodes until padding or the first invalid character (newlines are
/// skipped; padding is optional). With `forgiving` (`base64DecodeExt`), invalid characters are
/// skipped instead.
pub(super) fn base64(input: &[u8], forgiving: bool) -> Cow<'_, [u8]> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let (mut acc, mut n) = (0u32, 0);
    for &b in input {
        if b == b'\r' || b == b'\n' {
            continue;
        }
        if b == b'=' {
            break;
        }
        let Some(v) = base64_val(b) else {
            if forgiving {
                continue;
            }
            break;
        };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    Cow::Owned(out)
}

/// `hexDecode`: each pair of hex digits becomes a byte (a trailing odd digit is dropped); a
/// value that is not hex is left unchanged.
pub(super) fn hex(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.iter().all(u8::is_ascii_hexdigit) {
        return Cow::Borrowed(input);
    }
    Cow::Owned(input.chunks_exact(2).map(|p| x2c(p[0], p[1])).collect())
}

/// `utf8toUnicode`: each well-formed multi-byte UTF-8 sequence becomes `%uHHHH` (lowercase
/// hex, at least four digits); other bytes are copied. As in libmodsecurity, an overlong form
/// or a surrogate is followed by a copy of its first byte.
pub(super) fn utf8_to_unicode(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_ascii() {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len() * 2);
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        let len = match c {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        let seq = input
            .get(i..i + len)
            .filter(|s| s[1..].iter().all(|&b| b & 0xc0 == 0x80));
        let Some(seq) = seq.filter(|_| len > 1) else {
            out.push(c);
            i += 1;
            continue;
        };
        if len == 4 && c >= 0xf5 {
            out.push(c);
        }
        let lead = u32::from(c) & (0x7f >> len);
        let d = seq[1..]
            .iter()
            .fold(lead, |d, &b| (d << 6) | u32::from(b & 0x3f));
        out.extend_from_slice(format!("%u{d:04x}").as_bytes());
        let overlong = match len {
            2 => d < 0x80,
            3 => d < 0x800,
            _ => d < 0x10000,
        };
        if (0xd800..=0xdfff).contains(&d) || overlong {
            out.push(c);
        }
        i += len;
    }
    Cow::Owned(out)
}
