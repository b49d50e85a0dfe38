//! The route table of one listener: host first, then the longest path prefix.
//!
//! Host matching: an exact host beats the longest matching `*.suffix` wildcard, which beats
//! routes without a host. Once a host group is chosen, only its routes are considered (as
//! nginx picks a `server` before a `location`); no matching prefix there means 404.

use std::collections::HashMap;

/// Routes of one listener compiled for lookup. Values are indexes into the snapshot's routes.
#[derive(Debug, Default)]
pub struct Router {
    hosts: HostMap<PrefixTable>,
}

/// Path prefixes, longest first.
#[derive(Debug, Default)]
struct PrefixTable {
    entries: Vec<(String, usize)>,
}

impl PrefixTable {
    fn insert(&mut self, prefix: &str, route: usize) {
        self.entries.push((prefix.to_owned(), route));
        self.entries
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    }

    fn lookup(&self, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|&(_, r)| r)
    }
}

impl Router {
    /// Adds route `route` for `host` (exact, `*.suffix`, or any) and `prefix`.
    pub fn insert(&mut self, host: Option<&str>, prefix: &str, route: usize) {
        self.hosts.entry(host).insert(prefix, route);
    }

    /// The route for a request to `host` (no port; any case) and `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<usize> {
        self.hosts.get(host)?.lookup(path)
    }
}

/// Values keyed by host name pattern: an exact name (`api.example.com`) beats the longest
/// matching wildcard (`*.example.com` matches any name ending in `.example.com`), which beats
/// the catch-all (`None`). Used for HTTP routing and for SNI routing.
#[derive(Debug)]
pub struct HostMap<T> {
    exact: HashMap<String, T>,
    /// `(".example.com", value)`, longest suffix first.
    wildcard: Vec<(String, T)>,
    any_host: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            exact: HashMap::new(),
            wildcard: Vec::new(),
            any_host: None,
        }
    }
}

impl<T: Default> HostMap<T> {
    /// The value for `pattern` (lowercase exact name, `*.suffix`, or `None` for any host),
    /// created empty if missing.
    pub fn entry(&mut self, pattern: Option<&str>) -> &mut T {
        match pattern {
            None => self.any_host.get_or_insert_with(T::default),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => {
                    let pos = match self.wildcard.iter().position(|(s, _)| s == suffix) {
                        Some(pos) => pos,
                        None => {
                            self.wildcard.push((suffix.to_owned(), T::default()));
                            self.wildcard
                                .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
                            self.wildcard
                                .iter()
                                .position(|(s, _)| s == suffix)
                                .unwrap_or(0)
                        }
                    };
                    &mut self.wildcard[pos].1
                }
                None => self.exact.entry(h.to_owned()).or_default(),
            },
        }
    }
}

impl<T> HostMap<T> {
    /// The value for `host` (any case), falling back to the catch-all.
    pub fn get(&self, host: &str) -> Option<&T> {
        if !self.exact.is_empty() || !self.wildcard.is_empty() {
            let lower;
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = host.to_ascii_lowercase();
                lower.as_str()
            } else {
                host
            };
            if let Some(t) = self.exact.get(host) {
                return Some(t);
            }
            if let Some((_, t)) = self
                .wildcard
                .iter()
                .find(|(suffix, _)| host.ends_with(suffix.as_str()) && host.len() > suffix.len())
            {
                return Some(t);
            }
        }
        self.any_host.as_ref()
    }

    /// The catch-all value alone (for requests or connections that name no host).
    pub fn any(&self) -> Option<&T> {
        self.any_host.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_then_longest_prefix() {
        let mut r = Router::default();
        r.insert(None, "/", 0);
        r.insert(None, "/api/", 1);
        r.insert(None, "/api/v2/", 2);
        r.insert(Some("api.example.com"), "/", 3);
        r.insert(Some("*.example.com"), "/", 4);
        r.insert(Some("*.eu.example.com"), "/x", 5);
        assert_eq!(r.lookup("other", "/api/v2/users"), Some(2));
        assert_eq!(r.lookup("other", "/api/users"), Some(1));
        assert_eq!(r.lookup("other", "/"), Some(0));
        assert_eq!(r.lookup("API.example.com", "/api/"), Some(3));
        assert_eq!(r.lookup("www.example.com", "/"), Some(4));
        assert_eq!(r.lookup("example.com", "/"), Some(0));
        assert_eq!(r.lookup("a.eu.example.com", "/x1"), Some(5));
        assert_eq!(r.lookup("a.eu.example.com", "/y"), None);
    }
}
