//! Query strings in the key: parameters dropped by name pattern, kept by an allow-list, and
//! sorted.

use crate::glob::Glob;
use std::borrow::Cow;

/// What happens to a query string: which parameters stay and whether their order counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryFilter {
    /// `keep_query`: when set, only parameters whose name matches one of these stay.
    pub keep: Option<Vec<Glob>>,
    /// `ignore_query`: parameters whose name matches one of these are dropped.
    pub ignore: Vec<Glob>,
    /// `sort_query`: parameters are put in order of their names.
    pub sort: bool,
}

impl QueryFilter {
    /// Whether the filter leaves every query as it is (no lists, no sorting).
    pub fn is_identity(&self) -> bool {
        self.keep.is_none() && self.ignore.is_empty() && !self.sort
    }

    /// Whether a parameter with this (decoded) name stays.
    pub fn keeps(&self, name: &str) -> bool {
        self.keep
            .as_ref()
            .is_none_or(|keep| keep.iter().any(|g| g.matches(name)))
            && !self.ignore.iter().any(|g| g.matches(name))
    }

    /// The query (without `?`) with the filter applied; empty when no parameter stays.
    ///
    /// Parameters are split on `&`; empty ones are dropped. Names are matched
    /// percent-decoded (`utm%5Fsource` is `utm_source`); what stays is kept byte for byte.
    /// Sorting is stable and compares the names as written, so repeated parameters
    /// (`a=2&a=1`) keep their order. The identity filter returns the query unchanged.
    ///
    /// ```ignore
    /// assert_eq!(filter.apply("b=2&utm_source=x&a=1"), "a=1&b=2");
    /// ```
    pub fn apply<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if self.is_identity() {
            return Cow::Borrowed(query);
        }
        let mut kept: Vec<&str> = query
            .split('&')
            .filter(|param| !param.is_empty() && self.keeps(&decode(name_of(param))))
            .collect();
        if self.sort {
            kept.sort_by_key(|param| name_of(param));
        }
        Cow::Owned(kept.join("&"))
    }
}

/// The name part of `name=value` (all of it when there is no `=`).
pub fn name_of(param: &str) -> &str {
    param.split_once('=').map_or(param, |(name, _)| name)
}

/// The names of the parameters in a query, percent-decoded.
pub fn names(query: &str) -> impl Iterator<Item = Cow<'_, str>> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| decode(name_of(p)))
}

/// Percent-decodes `%XX` sequences (`+` is left alone: it is a space only in form values).
/// Malformed sequences are kept as they are; bytes that do not make UTF-8 become U+FFFD.
pub fn decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(patterns: &[&str]) -> Vec<Glob> {
        patterns.iter().map(|p| Glob::parse(p).unwrap()).collect()
    }

    fn ignoring(patterns: &[&str], sort: bool) -> QueryFilter {
        QueryFilter {
            keep: None,
            ignore: globs(patterns),
            sort,
        }
    }

    #[test]
    fn identity_keeps_the_query_as_is() {
        let f = QueryFilter::default();
        assert!(f.is_identity());
        assert_eq!(f.apply("b=1&&a=2&"), "b=1&&a=2&");
    }

    #[test]
    fn ignored_parameters_are_dropped() {
        let f = ignoring(&["utm_*", "fbclid", "gclid"], false);
        assert_eq!(f.apply("utm_source=a&id=7&utm_medium=b&fbclid=x"), "id=7");
        assert_eq!(f.apply("utm_source=a"), "");
        assert_eq!(f.apply("gclid"), "");
        assert_eq!(f.apply("gclid2=1"), "gclid2=1");
        assert_eq!(f.apply("b=1&&a=2&"), "b=1&a=2");
        assert_eq!(f.apply(""), "");
        // Names are matched decoded, the rest is kept byte for byte.
        assert_eq!(f.apply("utm%5Fsource=a&q=a%20b"), "q=a%20b");
    }

    #[test]
    fn sorting_orders_by_name_and_keeps_repeats_in_order() {
        let f = ignoring(&[], true);
        assert_eq!(f.apply("b=2&a=1&c"), "a=1&b=2&c");
        assert_eq!(f.apply("x=2&a=0&x=1"), "a=0&x=2&x=1");
        assert_eq!(f.apply("ab=1&a=2"), "a=2&ab=1");
        assert_eq!(f.apply("a=2&a"), "a=2&a");
    }

    #[test]
    fn allow_list_mode() {
        let f = QueryFilter {
            keep: Some(globs(&["page", "q", "filter_*"])),
            ignore: globs(&["filter_debug"]),
            sort: true,
        };
        assert_eq!(
            f.apply("utm_source=a&q=shoes&page=2&sid=9&filter_size=42&filter_debug=1"),
            "filter_size=42&page=2&q=shoes"
        );
        let none = QueryFilter {
            keep: Some(vec![]),
            ..QueryFilter::default()
        };
        assert!(!none.is_identity());
        assert_eq!(none.apply("a=1&b=2"), "");
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("utm%5fsource"), "utm_source");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("a%zz"), "a%zz");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "\u{fffd}");
        assert_eq!(decode("a+b"), "a+b");
        assert!(matches!(decode("plain"), Cow::Borrowed(_)));
        assert_eq!(
            names("a=1&&b%5F&c=%41").collect::<Vec<_>>(),
            ["a", "b_", "c"]
        );
    }
}
