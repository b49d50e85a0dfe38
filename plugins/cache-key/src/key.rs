//! The cache key's text: `<authority><path>[?<query>]` followed by `#<name>=<value>`
//! components.

use crate::query::QueryFilter;

/// A key split at its first `#`: the URL part (`authority`, `path`, `?query`) and the
/// components an earlier plugin may have appended (empty, or starting with `#`). The default
/// key never has a `#` (a request target carries no fragment).
pub fn split(key: &str) -> (&str, &str) {
    key.find('#').map_or((key, ""), |i| key.split_at(i))
}

/// The URL part of a key with `filter` applied to its query; the `?` goes when no parameter
/// stays.
///
/// ```ignore
/// assert_eq!(filter_url("a.test/p?utm_source=x", &filter), "a.test/p");
/// ```
pub fn filter_url(url: &str, filter: &QueryFilter) -> String {
    match url.split_once('?') {
        Some((path, query)) if !filter.is_identity() => {
            let query = filter.apply(query);
            if query.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{query}")
            }
        }
        _ => url.to_string(),
    }
}

/// Appends the component `#name=value` to `key`, `value` escaped with [`escape_into`].
pub fn push_component(key: &mut String, name: &str, value: &[u8]) {
    key.push('#');
    key.push_str(name);
    key.push('=');
    escape_into(key, value);
}

/// Appends `value` with every byte outside visible ASCII (`!`..`~`), and `%` and `#`,
/// percent-encoded (`%XX`, uppercase). So a value can never fake a component boundary, and
/// different byte strings always give different text.
pub fn escape_into(out: &mut String, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        if b.is_ascii_graphic() && b != b'%' && b != b'#' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::Glob;

    #[test]
    fn splitting() {
        assert_eq!(split("a.test/p?x=1"), ("a.test/p?x=1", ""));
        assert_eq!(
            split("a.test/p?x=1#lang=en#cookie:c=EUR"),
            ("a.test/p?x=1", "#lang=en#cookie:c=EUR")
        );
        assert_eq!(split(""), ("", ""));
    }

    #[test]
    fn filtering_the_url() {
        let f = QueryFilter {
            keep: None,
            ignore: vec![Glob::parse("utm_*").unwrap()],
            sort: true,
        };
        assert_eq!(filter_url("a.test/p?utm_source=x", &f), "a.test/p");
        assert_eq!(filter_url("a.test/p?", &f), "a.test/p");
        assert_eq!(
            filter_url("a.test/p?b=2&utm_x=1&a=1", &f),
            "a.test/p?a=1&b=2"
        );
        assert_eq!(filter_url("a.test/p", &f), "a.test/p");
        assert_eq!(
            filter_url("a.test/p?b&a", &QueryFilter::default()),
            "a.test/p?b&a"
        );
        assert_eq!(
            filter_url("a.test/p?", &QueryFilter::default()),
            "a.test/p?"
        );
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_into(&mut s, b"en-US,en;q=0.9");
        assert_eq!(s, "en-US,en;q=0.9");
        let mut s = String::new();
        escape_into(&mut s, b"a b#c%d\xff\t\x7f");
        assert_eq!(s, "a%20b%23c%25d%FF%09%7F");
    }

    #[test]
    fn components() {
        let mut key = "a.test/p".to_string();
        push_component(&mut key, "accept-language", b"en");
        push_component(&mut key, "cookie:currency", b"x#y=1");
        assert_eq!(key, "a.test/p#accept-language=en#cookie:currency=x%23y=1");
    }
}
