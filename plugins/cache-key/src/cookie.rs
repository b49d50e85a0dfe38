//! Cookies from `Cookie` request headers.

/// The `name=value` pairs of one `Cookie` header value (`a=1; b="2"`), in order: pairs are
/// split on `;` and trimmed, and split at the first `=`; a value in double quotes loses them.
/// Pairs without `=` are skipped. (The same reading as the SDK's `Request::cookie`.)
pub fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        };
        Some((name, value))
    })
}

/// The value of cookie `name` in any of `headers` (the first one wins), as bytes.
pub fn find<'h>(headers: &'h [Vec<u8>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .flat_map(|h| pairs(h))
        .find_map(|(n, v)| (n == name.as_bytes()).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pairs() {
        let got: Vec<_> = pairs(b"a=1; b=\"x y\" ;flag; c = 3;d=").collect();
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"1"), (b"b", b"x y"), (b"c", b"3"), (b"d", b"")];
        assert_eq!(got, want);
        assert_eq!(pairs(b"").count(), 0);
    }

    #[test]
    fn finds_the_first_across_headers() {
        let headers = vec![b"a=1; currency=EUR".to_vec(), b"currency=USD; z=9".to_vec()];
        assert_eq!(find(&headers, "currency"), Some(&b"EUR"[..]));
        assert_eq!(find(&headers, "z"), Some(&b"9"[..]));
        assert_eq!(find(&headers, "Currency"), None);
        assert_eq!(find(&[], "a"), None);
    }
}
