//! Transformations that replace the value with a summary or an encoding of it: `length`,
//! `sha1`, `md5`, `hexEncode`.

use std::borrow::Cow;

/// `length`: the value's length in bytes, as decimal text.
pub(super) fn length(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(input.len().to_string().into_bytes())
}

/// `sha1`: the raw 20-byte SHA-1 digest (rules add `t:hexEncode` to compare it as text).
pub(super) fn sha1(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(sha1_smol::Sha1::from(input).digest().bytes().to_vec())
}

/// `md5`: the raw 16-byte MD5 digest.
pub(super) fn md5(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(md5::compute(input).0.to_vec())
}

/// `hexEncode`: each byte as two lowercase hex digits.
pub(super) fn hex(input: &[u8]) -> Cow<'_, [u8]> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    Cow::Owned(out)
}
