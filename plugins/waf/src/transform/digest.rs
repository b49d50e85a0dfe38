//! Transformations that replace the value with a summary of it: `length`, `sha1`, `md5`.

use std::borrow::Cow;

/// `length`: the value's length in bytes, as decimal text.
pub(super) fn length(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(input.len().to_string().into_bytes())
}

/// `sha1`: the raw 20-byte SHA-1 digest (not hex; chain `t:hexEncode`-style rules compare bytes).
pub(super) fn sha1(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(sha1_smol::Sha1::from(input).digest().bytes().to_vec())
}

/// `md5`: the raw 16-byte MD5 digest.
pub(super) fn md5(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(md5::compute(input).0.to_vec())
}
