//! The rules of RFC 9111 for a shared cache, as pure functions.
//!
//! [`CacheControl::parse`] reads the `Cache-Control` header lines of a request or a response;
//! [`is_storable`] says whether a response may be stored (§3); [`freshness_lifetime`] (§4.2.1)
//! and [`current_age`] (§4.2.3) do the time arithmetic; [`freshness`] combines them with the
//! request's directives into what the cache may do with a stored response (§4.2, §4.2.4, and
//! RFC 5861's `stale-while-revalidate` / `stale-if-error`). No I/O, no clock: every time is an
//! argument, so the caller decides what "now" is and the tests use fixed times.
//!
//! Invariants:
//! - Never panics, on any input: no indexing, all arithmetic saturating, times before the
//!   epoch or in the wrong order give zero durations rather than errors.
//! - Parsing is tolerant (directive names in any case, spaces around `=` and `,`, quoted or
//!   token values, unknown directives and non-UTF-8 bytes ignored) and, where the header is
//!   ambiguous, conservative: a directive given twice keeps its most restrictive value, and an
//!   invalid freshness value (`max-age=abc`) counts as zero, i.e. the response is stale
//!   (RFC 9111 §4.2.1, §5.2). delta-seconds saturate at 2^31 (§1.2.2).
//! - Shared-cache view: `private` (with or without field names), `s-maxage` and
//!   `proxy-revalidate` apply; qualified `no-cache="field"` and `private="field"` are treated
//!   as their unqualified forms (revalidate always, never store), which the RFC permits.
//! - Conservative about users' data: a request with `Authorization` or a response with
//!   `Set-Cookie` is only stored when the response says so explicitly (`public`, `s-maxage`,
//!   or for `Authorization` also `must-revalidate`); 206 is never stored (no range support).

// The invariants above, checked by clippy (the unit tests may index and unwrap).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, Method, StatusCode};

/// Largest delta-seconds value kept; larger values saturate to it (RFC 9111 §1.2.2).
pub const MAX_DELTA_SECONDS: u32 = 1 << 31;

/// Upper bound on a heuristic freshness lifetime (RFC 9111 §4.2.2 leaves it to the cache).
pub const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// To which parts of a response `no-cache` or `private` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldScope {
    /// The whole response (the directive had no argument, or an empty one).
    All,
    /// Only the named header fields (ASCII-lowercased, in the order given, duplicates kept).
    Fields(Vec<String>),
}

impl FieldScope {
    /// Combines two occurrences of the same directive: [`FieldScope::All`] wins, field lists
    /// are concatenated.
    fn merge(self, other: FieldScope) -> FieldScope {
        match (self, other) {
            (FieldScope::Fields(mut a), FieldScope::Fields(b)) => {
                a.extend(b);
                FieldScope::Fields(a)
            }
            _ => FieldScope::All,
        }
    }
}

/// The argument of a request's `max-stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// `max-stale` without a value: any staleness is acceptable.
    Any,
    /// `max-stale=N`: staleness of up to N seconds is acceptable.
    Seconds(u32),
}

/// The directives of all `Cache-Control` header lines of one message (RFC 9111 §5.2).
///
/// Request-only and response-only directives share the struct; each function reads the ones
/// that apply to it. `None`/`false` means the directive was absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age=N` (§5.2.1.1, §5.2.2.1); invalid values count as 0, duplicates keep the least.
    pub max_age: Option<u32>,
    /// `s-maxage=N` (§5.2.2.10); invalid values count as 0, duplicates keep the least.
    pub s_maxage: Option<u32>,
    /// `no-store` (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-cache`, optionally with field names (§5.2.1.4, §5.2.2.4).
    pub no_cache: Option<FieldScope>,
    /// `private`, optionally with field names (§5.2.2.7).
    pub private: Option<FieldScope>,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3); parsed, not acted on (it only relaxes `no-store`).
    pub must_understand: bool,
    /// `max-stale[=N]` (§5.2.1.2); invalid values count as 0, duplicates keep the least.
    pub max_stale: Option<MaxStale>,
    /// `min-fresh=N` (§5.2.1.3); invalid values are ignored, duplicates keep the largest.
    pub min_fresh: Option<u32>,
    /// `only-if-cached` (§5.2.1.7): the caller answers 504 rather than forwarding.
    pub only_if_cached: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3); invalid values ignored, duplicates keep the least.
    pub stale_while_revalidate: Option<u32>,
    /// `stale-if-error=N` (RFC 5861 §4); invalid values ignored, duplicates keep the least.
    pub stale_if_error: Option<u32>,
    /// `no-transform` (§5.2.1.6, §5.2.2.6).
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
}

/// Keeps the smaller of an existing and a new value.
fn min_opt(old: Option<u32>, new: u32) -> Option<u32> {
    Some(old.map_or(new, |o| o.min(new)))
}

/// Parses delta-seconds (`1*DIGIT`), saturating at [`MAX_DELTA_SECONDS`].
fn delta_seconds(value: Option<&[u8]>) -> Option<u32> {
    let value = value?;
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, d| {
        acc.saturating_mul(10)
            .saturating_add(u32::from(d.saturating_sub(b'0')))
            .min(MAX_DELTA_SECONDS)
    }))
}

/// A comma-separated list of field names, lowercased; empty means [`FieldScope::All`].
fn field_scope(value: Option<&[u8]>) -> FieldScope {
    let Some(value) = value else {
        return FieldScope::All;
    };
    let fields: Vec<String> = value
        .split(|&b| b == b',')
        .map(|f| String::from_utf8_lossy(f.trim_ascii()).to_ascii_lowercase())
        .filter(|f| !f.is_empty())
        .collect();
    if fields.is_empty() {
        FieldScope::All
    } else {
        FieldScope::Fields(fields)
    }
}

impl CacheControl {
    /// Parses every `Cache-Control` line of `headers`; never fails (see the module invariants).
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for line in headers.get_all(header::CACHE_CONTROL) {
            cc.parse_line(line.as_bytes());
        }
        cc
    }

    /// Splits one header line into directives, honouring quoted strings (commas inside them
    /// do not separate directives; `\` escapes the next byte).
    fn parse_line(&mut self, line: &[u8]) {
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            Name,
            ValueStart,
            Token,
            Quoted,
            Escape,
            AfterQuoted,
        }
        let mut st = St::Name;
        let mut name: Vec<u8> = Vec::new();
        let mut value: Option<Vec<u8>> = None;
        for &b in line {
            match (st, b) {
                (St::Quoted, b'\\') => st = St::Escape,
                (St::Quoted, b'"') => st = St::AfterQuoted,
                (St::Quoted, _) | (St::Escape, _) => {
                    value.get_or_insert_with(Vec::new).push(b);
                    st = St::Quoted;
                }
                (_, b',') => {
                    self.apply(&name, value.take().as_deref());
                    name.clear();
                    st = St::Name;
                }
                (St::Name, b'=') => {
                    value = Some(Vec::new());
                    st = St::ValueStart;
                }
                (St::Name, _) => name.push(b),
                (St::ValueStart, b' ' | b'\t') => {}
                (St::ValueStart, b'"') => st = St::Quoted,
                (St::ValueStart, _) | (St::Token, _) => {
                    value.get_or_insert_with(Vec::new).push(b);
                    st = St::Token;
                }
                (St::AfterQuoted, _) => {}
            }
        }
        self.apply(&name, value.as_deref());
    }

    /// Records one directive; unknown names are ignored.
    fn apply(&mut self, name: &[u8], value: Option<&[u8]>) {
        let name = name.trim_ascii().to_ascii_lowercase();
        let value = value.map(<[u8]>::trim_ascii);
        match name.as_slice() {
            b"max-age" => self.max_age = min_opt(self.max_age, delta_seconds(value).unwrap_or(0)),
            b"s-maxage" => {
                self.s_maxage = min_opt(self.s_maxage, delta_seconds(value).unwrap_or(0));
            }
            b"no-store" => self.no_store = true,
            b"no-cache" => {
                let new = field_scope(value);
                self.no_cache = Some(match self.no_cache.take() {
                    Some(old) => old.merge(new),
                    None => new,
                });
            }
            b"private" => {
                let new = field_scope(value);
                self.private = Some(match self.private.take() {
                    Some(old) => old.merge(new),
                    None => new,
                });
            }
            b"public" => self.public = true,
            b"must-revalidate" => self.must_revalidate = true,
            b"proxy-revalidate" => self.proxy_revalidate = true,
            b"must-understand" => self.must_understand = true,
            b"max-stale" => {
                let new = match value {
                    None => MaxStale::Any,
                    Some(_) => MaxStale::Seconds(delta_seconds(value).unwrap_or(0)),
                };
                self.max_stale = Some(match (self.max_stale, new) {
                    (Some(MaxStale::Seconds(a)), MaxStale::Seconds(b)) => {
                        MaxStale::Seconds(a.min(b))
                    }
                    (Some(MaxStale::Seconds(a)), MaxStale::Any) => MaxStale::Seconds(a),
                    (_, new) => new,
                });
            }
            b"min-fresh" => {
                if let Some(n) = delta_seconds(value) {
                    self.min_fresh = Some(self.min_fresh.map_or(n, |o| o.max(n)));
                }
            }
            b"only-if-cached" => self.only_if_cached = true,
            b"stale-while-revalidate" => {
                if let Some(n) = delta_seconds(value) {
                    self.stale_while_revalidate = min_opt(self.stale_while_revalidate, n);
                }
            }
            b"stale-if-error" => {
                if let Some(n) = delta_seconds(value) {
                    self.stale_if_error = min_opt(self.stale_if_error, n);
                }
            }
            b"no-transform" => self.no_transform = true,
            b"immutable" => self.immutable = true,
            _ => {}
        }
    }
}

/// Why a response may not be stored; [`NotStorable::detail`] names it for `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// The request method is not GET or HEAD.
    Method,
    /// The request carried `Cache-Control: no-store`.
    RequestNoStore,
    /// The response carried `Cache-Control: no-store`.
    ResponseNoStore,
    /// The response carried `Cache-Control: private` (with or without field names).
    Private,
    /// The request carried `Authorization` and the response did not allow sharing it.
    Authorization,
    /// The status is not a final status this cache understands (1xx, 206, 304, >= 600).
    Status,
    /// The status is not cacheable by default and the response has no explicit freshness.
    NoExplicitFreshness,
    /// The response carried `Vary: *`.
    VaryStar,
    /// The response carried `Set-Cookie` without `public` or `s-maxage`.
    SetCookie,
}

impl NotStorable {
    /// A short token for the `detail` parameter of `Cache-Status` (RFC 9211 §2.2).
    pub fn detail(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::RequestNoStore => "request-no-store",
            NotStorable::ResponseNoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::Status => "status",
            NotStorable::NoExplicitFreshness => "no-freshness",
            NotStorable::VaryStar => "vary-star",
            NotStorable::SetCookie => "set-cookie",
        }
    }
}

/// Whether `status` is cacheable by default, i.e. may get a heuristic freshness lifetime
/// (RFC 9110 §15.1), minus 206, which this cache does not support.
pub fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether `status` is a final status this cache understands well enough to store.
fn is_understood(status: StatusCode) -> bool {
    let code = status.as_u16();
    (200..600).contains(&code) && code != 206 && code != 304
}

/// Whether `headers` has a `Vary` line naming `*`.
fn has_vary_star(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().any(|line| {
        line.as_bytes()
            .split(|&b| b == b',')
            .any(|f| f.trim_ascii() == b"*")
    })
}

/// Whether a shared cache may store this response (RFC 9111 §3, §3.5), or why not.
///
/// `request_cc` and `response_cc` are [`CacheControl::parse`] of the two header maps. The
/// checks run in a fixed order and the first failing one is reported.
pub fn is_storable(
    method: &Method,
    request_headers: &HeaderMap,
    status: StatusCode,
    response_headers: &HeaderMap,
    request_cc: &CacheControl,
    response_cc: &CacheControl,
) -> Result<(), NotStorable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NotStorable::Method);
    }
    if request_cc.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    if response_cc.no_store {
        return Err(NotStorable::ResponseNoStore);
    }
    if response_cc.private.is_some() {
        return Err(NotStorable::Private);
    }
    if !is_understood(status) {
        return Err(NotStorable::Status);
    }
    if request_headers.contains_key(header::AUTHORIZATION)
        && !(response_cc.public || response_cc.s_maxage.is_some() || response_cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    let explicit = response_headers.contains_key(header::EXPIRES)
        || response_cc.max_age.is_some()
        || response_cc.s_maxage.is_some()
        || response_cc.public;
    if !explicit && !is_heuristically_cacheable(status) {
        return Err(NotStorable::NoExplicitFreshness);
    }
    if has_vary_star(response_headers) {
        return Err(NotStorable::VaryStar);
    }
    if response_headers.contains_key(header::SET_COOKIE)
        && !(response_cc.public || response_cc.s_maxage.is_some())
    {
        return Err(NotStorable::SetCookie);
    }
    Ok(())
}

/// The single HTTP-date in the `name` lines of `headers`: `None` when absent, `Some(Err(()))`
/// when unparsable or given several times with different values.
fn http_date(headers: &HeaderMap, name: &HeaderName) -> Option<Result<SystemTime, ()>> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.any(|other| other != first) {
        return Some(Err(()));
    }
    Some(
        first
            .to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
            .ok_or(()),
    )
}

/// `a - b`, or zero when `b` is later.
fn since(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or(Duration::ZERO)
}

/// The `Date` of a response, or `response_time` when it has none or a bad one (§4.2.3).
fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    match http_date(headers, &header::DATE) {
        Some(Ok(date)) => date,
        _ => response_time,
    }
}

/// How long a stored response stays fresh, for a shared cache (RFC 9111 §4.2.1, §4.2.2).
///
/// In order: `s-maxage`, `max-age`, `Expires` minus `Date` (an invalid or repeated `Expires`
/// gives zero), then a heuristic of 10% of `Date` minus `Last-Modified`, capped at
/// [`MAX_HEURISTIC_LIFETIME`], for statuses cacheable by default or responses marked `public`;
/// otherwise zero. `response_time` stands in for a missing or invalid `Date`.
pub fn freshness_lifetime(
    status: StatusCode,
    response_headers: &HeaderMap,
    response_cc: &CacheControl,
    response_time: SystemTime,
) -> Duration {
    if let Some(s) = response_cc.s_maxage {
        return Duration::from_secs(u64::from(s));
    }
    if let Some(s) = response_cc.max_age {
        return Duration::from_secs(u64::from(s));
    }
    let date = date_value(response_headers, response_time);
    match http_date(response_headers, &header::EXPIRES) {
        Some(Ok(expires)) => return since(expires, date),
        Some(Err(())) => return Duration::ZERO,
        None => {}
    }
    if !(is_heuristically_cacheable(status) || response_cc.public) {
        return Duration::ZERO;
    }
    match http_date(response_headers, &header::LAST_MODIFIED) {
        Some(Ok(last_modified)) => since(date, last_modified)
            .checked_div(10)
            .unwrap_or_default()
            .min(MAX_HEURISTIC_LIFETIME),
        _ => Duration::ZERO,
    }
}

/// The `Age` of a response in seconds: the largest valid value over its lines, zero if none.
fn age_value(headers: &HeaderMap) -> Duration {
    let secs = headers
        .get_all(header::AGE)
        .iter()
        .filter_map(|v| delta_seconds(Some(v.as_bytes().trim_ascii())))
        .max()
        .unwrap_or(0);
    Duration::from_secs(u64::from(secs))
}

/// How old a stored response is at `now` (RFC 9111 §4.2.3).
///
/// `request_time` is when the request that fetched it was sent, `response_time` when the
/// response was received; `Age` and `Date` come from `response_headers` (a missing `Date`
/// counts as `response_time`). Times out of order contribute zero, never a negative age.
pub fn current_age(
    response_headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    let date = date_value(response_headers, response_time);
    let apparent_age = since(response_time, date);
    let response_delay = since(response_time, request_time);
    let corrected_age_value = age_value(response_headers).saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = since(now, response_time);
    corrected_initial_age.saturating_add(resident_time)
}

/// What a shared cache may do with a stored response for a given request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fresh, and fresh enough for the request: serve it.
    Fresh,
    /// Stale, but the request's `max-stale` accepts it: serve it without revalidating.
    AcceptedStale,
    /// Stale: revalidate. It may still be served meanwhile (`stale-while-revalidate`) or when
    /// the origin fails (`stale-if-error`, from the response or the request).
    Stale {
        /// Serve it now and revalidate in the background.
        may_serve_while_revalidate: bool,
        /// Serve it if the revalidation fails (error status or no answer).
        may_serve_if_error: bool,
    },
    /// Revalidate before any use, and never serve it unvalidated, even on error:
    /// `no-cache` (request or response), or stale with `must-revalidate`,
    /// `proxy-revalidate` or `s-maxage` (which implies `proxy-revalidate`, §5.2.2.10), or
    /// older than the request's `max-age`.
    MustRevalidate,
}

/// Decides how a stored response may be used (RFC 9111 §4.2, §4.2.4, §5.2.1; RFC 5861).
///
/// `lifetime` is [`freshness_lifetime`], `age` is [`current_age`] at the time of the request.
/// A response is fresh while `age < lifetime`; a request's `min-fresh` demands that margin on
/// top, its `max-age` caps the acceptable age, its `max-stale` accepts staleness. Request
/// `Pragma: no-cache` is the caller's business (treat it as `no-cache` when there is no
/// `Cache-Control`), as is `only-if-cached`.
pub fn freshness(
    lifetime: Duration,
    age: Duration,
    response_cc: &CacheControl,
    request_cc: &CacheControl,
) -> Freshness {
    if request_cc.no_cache.is_some() || response_cc.no_cache.is_some() {
        return Freshness::MustRevalidate;
    }
    if request_cc
        .max_age
        .is_some_and(|max_age| age > Duration::from_secs(u64::from(max_age)))
    {
        return Freshness::MustRevalidate;
    }
    let min_fresh = Duration::from_secs(u64::from(request_cc.min_fresh.unwrap_or(0)));
    if age.saturating_add(min_fresh) < lifetime {
        return Freshness::Fresh;
    }
    let no_stale = response_cc.must_revalidate
        || response_cc.proxy_revalidate
        || response_cc.s_maxage.is_some();
    if no_stale {
        return Freshness::MustRevalidate;
    }
    // Staleness beyond the lifetime; a response that is fresh but not for min-fresh long
    // enough is treated as stale by zero seconds.
    let staleness = age.saturating_sub(lifetime);
    let within = |n: Option<u32>| n.is_some_and(|n| staleness <= Duration::from_secs(u64::from(n)));
    match request_cc.max_stale {
        Some(MaxStale::Any) => return Freshness::AcceptedStale,
        Some(MaxStale::Seconds(n)) if within(Some(n)) => return Freshness::AcceptedStale,
        _ => {}
    }
    Freshness::Stale {
        may_serve_while_revalidate: within(response_cc.stale_while_revalidate),
        may_serve_if_error: within(response_cc.stale_if_error) || within(request_cc.stale_if_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::UNIX_EPOCH;

    // --- Helpers ------------------------------------------------------------------------

    /// A header map from `(name, value)` pairs; repeated names become several lines.
    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Parses a single `Cache-Control` line.
    fn cc(value: &str) -> CacheControl {
        CacheControl::parse(&headers(&[("cache-control", value)]))
    }

    /// A fixed instant, `secs` after a round base time (2024-01-01T00:00:00Z).
    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_704_067_200 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    // --- Parsing: every directive -------------------------------------------------------

    #[test]
    fn empty_and_absent() {
        assert_eq!(
            CacheControl::parse(&HeaderMap::new()),
            CacheControl::default()
        );
        assert_eq!(cc(""), CacheControl::default());
        assert_eq!(cc(" , ,, "), CacheControl::default());
    }

    #[test]
    fn every_directive() {
        let c = cc(
            "max-age=60, s-maxage=30, no-store, no-cache, private, public, \
                    must-revalidate, proxy-revalidate, must-understand, max-stale=10, min-fresh=5, \
                    only-if-cached, stale-while-revalidate=7, stale-if-error=8, no-transform, \
                    immutable",
        );
        assert_eq!(
            c,
            CacheControl {
                max_age: Some(60),
                s_maxage: Some(30),
                no_store: true,
                no_cache: Some(FieldScope::All),
                private: Some(FieldScope::All),
                public: true,
                must_revalidate: true,
                proxy_revalidate: true,
                must_understand: true,
                max_stale: Some(MaxStale::Seconds(10)),
                min_fresh: Some(5),
                only_if_cached: true,
                stale_while_revalidate: Some(7),
                stale_if_error: Some(8),
                no_transform: true,
                immutable: true,
            }
        );
    }

    #[test]
    fn each_directive_alone() {
        assert_eq!(cc("max-age=5").max_age, Some(5));
        assert_eq!(cc("s-maxage=5").s_maxage, Some(5));
        assert!(cc("no-store").no_store);
        assert!(cc("public").public);
        assert!(cc("must-revalidate").must_revalidate);
        assert!(cc("proxy-revalidate").proxy_revalidate);
        assert!(cc("must-understand").must_understand);
        assert!(cc("only-if-cached").only_if_cached);
        assert!(cc("no-transform").no_transform);
        assert!(cc("immutable").immutable);
        assert_eq!(cc("min-fresh=3").min_fresh, Some(3));
        assert_eq!(
            cc("stale-while-revalidate=3").stale_while_revalidate,
            Some(3)
        );
        assert_eq!(cc("stale-if-error=3").stale_if_error, Some(3));
        assert_eq!(cc("max-stale").max_stale, Some(MaxStale::Any));
        assert_eq!(cc("max-stale=9").max_stale, Some(MaxStale::Seconds(9)));
    }

    #[test]
    fn field_names() {
        assert_eq!(cc("no-cache").no_cache, Some(FieldScope::All));
        assert_eq!(
            cc("no-cache=\"Set-Cookie, X-Foo\"").no_cache,
            Some(FieldScope::Fields(vec![
                "set-cookie".into(),
                "x-foo".into()
            ]))
        );
        assert_eq!(
            cc("private=set-cookie").private,
            Some(FieldScope::Fields(vec!["set-cookie".into()]))
        );
        assert_eq!(cc("private=\"\"").private, Some(FieldScope::All));
        assert_eq!(cc("private").private, Some(FieldScope::All));
        // Duplicates: lists merge, the unqualified form wins.
        assert_eq!(
            cc("no-cache=a, no-cache=\"b\"").no_cache,
            Some(FieldScope::Fields(vec!["a".into(), "b".into()]))
        );
        assert_eq!(cc("private=a, private").private, Some(FieldScope::All));
        assert_eq!(cc("no-cache, no-cache=a").no_cache, Some(FieldScope::All));
    }

    #[test]
    fn case_spaces_and_quotes() {
        let c = cc("  MAX-AGE = 60 ,Public,  No-Cache=\"a\"  ");
        assert_eq!(c.max_age, Some(60));
        assert!(c.public);
        assert_eq!(c.no_cache, Some(FieldScope::Fields(vec!["a".into()])));
        assert_eq!(cc("max-age=\"60\"").max_age, Some(60));
        assert_eq!(cc("max-age=\t7").max_age, Some(7));
    }

    #[test]
    fn quoted_strings_with_commas_do_not_split() {
        let c = cc("private=\"a, no-store, b\", max-age=3");
        assert!(!c.no_store);
        assert_eq!(c.max_age, Some(3));
        assert_eq!(
            c.private,
            Some(FieldScope::Fields(vec![
                "a".into(),
                "no-store".into(),
                "b".into()
            ]))
        );
        // Escapes, and garbage after the closing quote.
        let c = cc(r#"ext="x\",no-store" junk, public"#);
        assert!(!c.no_store);
        assert!(c.public);
        // Unterminated quote swallows the rest of the line.
        let c = cc("ext=\"abc, no-store");
        assert!(!c.no_store);
    }

    #[test]
    fn several_lines_combine() {
        let c = CacheControl::parse(&headers(&[
            ("cache-control", "public"),
            ("cache-control", "max-age=10"),
            ("Cache-Control", "no-transform"),
        ]));
        assert!(c.public && c.no_transform);
        assert_eq!(c.max_age, Some(10));
    }

    #[test]
    fn duplicates_most_restrictive() {
        assert_eq!(cc("max-age=60, max-age=10").max_age, Some(10));
        assert_eq!(cc("max-age=10, max-age=60").max_age, Some(10));
        assert_eq!(cc("s-maxage=10, s-maxage=5").s_maxage, Some(5));
        assert_eq!(cc("min-fresh=10, min-fresh=50").min_fresh, Some(50));
        assert_eq!(
            cc("max-stale, max-stale=5").max_stale,
            Some(MaxStale::Seconds(5))
        );
        assert_eq!(
            cc("max-stale=5, max-stale").max_stale,
            Some(MaxStale::Seconds(5))
        );
        assert_eq!(
            cc("max-stale=5, max-stale=2").max_stale,
            Some(MaxStale::Seconds(2))
        );
        assert_eq!(
            cc("stale-if-error=5, stale-if-error=9").stale_if_error,
            Some(5)
        );
        assert_eq!(
            cc("stale-while-revalidate=9, stale-while-revalidate=5").stale_while_revalidate,
            Some(5)
        );
    }

    #[test]
    fn invalid_values() {
        // Invalid freshness means stale.
        for bad in [
            "max-age=abc",
            "max-age=-1",
            "max-age=+5",
            "max-age=1.5",
            "max-age=",
            "max-age",
        ] {
            assert_eq!(cc(bad).max_age, Some(0), "{bad}");
        }
        assert_eq!(cc("max-age=60, max-age=x").max_age, Some(0));
        assert_eq!(cc("s-maxage=x").s_maxage, Some(0));
        assert_eq!(cc("max-stale=x").max_stale, Some(MaxStale::Seconds(0)));
        // Others are ignored.
        assert_eq!(cc("min-fresh=x").min_fresh, None);
        assert_eq!(cc("stale-while-revalidate").stale_while_revalidate, None);
        assert_eq!(cc("stale-if-error=-3").stale_if_error, None);
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(cc("max-age=2147483648").max_age, Some(MAX_DELTA_SECONDS));
        assert_eq!(
            cc("max-age=99999999999999999999999999").max_age,
            Some(MAX_DELTA_SECONDS)
        );
        assert_eq!(cc("max-age=2147483647").max_age, Some(2_147_483_647));
        assert_eq!(cc("max-age=0000000000000000000042").max_age, Some(42));
        assert_eq!(
            cc("min-fresh=4294967296").min_fresh,
            Some(MAX_DELTA_SECONDS)
        );
    }

    #[test]
    fn garbage_and_unknown() {
        let c = cc("foo, bar=baz, =, ==, \"\", max-age=5, ,x=\"");
        assert_eq!(c.max_age, Some(5));
        assert_eq!(CacheControl { max_age: None, ..c }, CacheControl::default());
        // Names are not prefixes.
        assert_eq!(
            cc("no-stores, publicx, max-agex=3"),
            CacheControl::default()
        );
        // Non-UTF-8 bytes.
        let mut map = HeaderMap::new();
        map.append(
            header::CACHE_CONTROL,
            HeaderValue::from_bytes(b"\xff\xfe, no-store, private=\"\xe9\"").unwrap(),
        );
        let c = CacheControl::parse(&map);
        assert!(c.no_store);
        assert!(matches!(c.private, Some(FieldScope::Fields(_))));
    }

    // --- Storability --------------------------------------------------------------------

    fn storable(
        method: Method,
        req: &[(&str, &str)],
        status: u16,
        resp: &[(&str, &str)],
    ) -> Result<(), NotStorable> {
        let (req, resp) = (headers(req), headers(resp));
        is_storable(
            &method,
            &req,
            StatusCode::from_u16(status).unwrap(),
            &resp,
            &CacheControl::parse(&req),
            &CacheControl::parse(&resp),
        )
    }

    /// Method, request headers, status, response headers, expected outcome.
    type Case = (
        http::Method,
        Vec<(&'static str, &'static str)>,
        u16,
        Vec<(&'static str, &'static str)>,
        Result<(), NotStorable>,
    );

    #[test]
    fn storability_table() {
        use NotStorable::*;
        let g = http::Method::GET;
        let cases: Vec<Case> = vec![
            (g.clone(), vec![], 200, vec![], Ok(())),
            (http::Method::HEAD, vec![], 200, vec![], Ok(())),
            (
                http::Method::POST,
                vec![],
                200,
                vec![("cache-control", "max-age=60")],
                Err(Method),
            ),
            (http::Method::PUT, vec![], 200, vec![], Err(Method)),
            (http::Method::DELETE, vec![], 200, vec![], Err(Method)),
            (
                g.clone(),
                vec![("cache-control", "no-store")],
                200,
                vec![],
                Err(RequestNoStore),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("cache-control", "no-store, max-age=9")],
                Err(ResponseNoStore),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("cache-control", "private")],
                Err(Private),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("cache-control", "private=set-cookie")],
                Err(Private),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("cache-control", "no-cache")],
                Ok(()),
            ),
            // Authorization.
            (
                g.clone(),
                vec![("authorization", "Basic x")],
                200,
                vec![("cache-control", "max-age=60")],
                Err(Authorization),
            ),
            (
                g.clone(),
                vec![("authorization", "Basic x")],
                200,
                vec![("cache-control", "public")],
                Ok(()),
            ),
            (
                g.clone(),
                vec![("authorization", "Basic x")],
                200,
                vec![("cache-control", "s-maxage=5")],
                Ok(()),
            ),
            (
                g.clone(),
                vec![("authorization", "Basic x")],
                200,
                vec![("cache-control", "must-revalidate")],
                Ok(()),
            ),
            // Statuses.
            (g.clone(), vec![], 100, vec![], Err(Status)),
            (
                g.clone(),
                vec![],
                206,
                vec![("cache-control", "max-age=60")],
                Err(Status),
            ),
            (
                g.clone(),
                vec![],
                304,
                vec![("cache-control", "max-age=60")],
                Err(Status),
            ),
            (
                g.clone(),
                vec![],
                600,
                vec![("cache-control", "max-age=60")],
                Err(Status),
            ),
            (g.clone(), vec![], 302, vec![], Err(NoExplicitFreshness)),
            (
                g.clone(),
                vec![],
                302,
                vec![("cache-control", "max-age=60")],
                Ok(()),
            ),
            (
                g.clone(),
                vec![],
                302,
                vec![("cache-control", "s-maxage=60")],
                Ok(()),
            ),
            (
                g.clone(),
                vec![],
                302,
                vec![("cache-control", "public")],
                Ok(()),
            ),
            (g.clone(), vec![], 302, vec![("expires", "0")], Ok(())),
            (g.clone(), vec![], 500, vec![], Err(NoExplicitFreshness)),
            (
                g.clone(),
                vec![],
                503,
                vec![("cache-control", "max-age=5")],
                Ok(()),
            ),
            // Vary.
            (g.clone(), vec![], 200, vec![("vary", "*")], Err(VaryStar)),
            (
                g.clone(),
                vec![],
                200,
                vec![("vary", "accept, * ")],
                Err(VaryStar),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("vary", "accept"), ("vary", "*")],
                Err(VaryStar),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("vary", "accept-encoding")],
                Ok(()),
            ),
            // Set-Cookie.
            (
                g.clone(),
                vec![],
                200,
                vec![("set-cookie", "a=b")],
                Err(SetCookie),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("set-cookie", "a=b"), ("cache-control", "max-age=60")],
                Err(SetCookie),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("set-cookie", "a=b"), ("cache-control", "public")],
                Ok(()),
            ),
            (
                g.clone(),
                vec![],
                200,
                vec![("set-cookie", "a=b"), ("cache-control", "s-maxage=1")],
                Ok(()),
            ),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert_eq!(
                storable(c.0.clone(), &c.1, c.2, &c.3),
                c.4,
                "case {i}: {c:?}"
            );
        }
    }

    #[test]
    fn heuristically_cacheable_statuses() {
        for code in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert!(
                is_heuristically_cacheable(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
            assert_eq!(storable(Method::GET, &[], code, &[]), Ok(()), "{code}");
        }
        for code in [
            201, 202, 206, 302, 303, 304, 307, 400, 401, 403, 500, 502, 503, 504, 599,
        ] {
            assert!(
                !is_heuristically_cacheable(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn details_are_distinct_tokens() {
        use NotStorable::*;
        let all = [
            Method,
            RequestNoStore,
            ResponseNoStore,
            Private,
            Authorization,
            Status,
            NoExplicitFreshness,
            VaryStar,
            SetCookie,
        ];
        let details: std::collections::HashSet<_> = all.iter().map(|r| r.detail()).collect();
        assert_eq!(details.len(), all.len());
        assert!(
            details
                .iter()
                .all(|d| d.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
        );
    }

    // --- Freshness lifetime -------------------------------------------------------------

    fn lifetime(status: u16, resp: &[(&str, &str)], response_time: SystemTime) -> Duration {
        let resp = headers(resp);
        freshness_lifetime(
            StatusCode::from_u16(status).unwrap(),
            &resp,
            &CacheControl::parse(&resp),
            response_time,
        )
    }

    #[test]
    fn lifetime_precedence() {
        let d = date(0);
        let exp = date(500);
        let all = [
            ("date", d.as_str()),
            ("expires", exp.as_str()),
            ("cache-control", "max-age=100, s-maxage=50"),
        ];
        assert_eq!(lifetime(200, &all, t(0)), S(50));
        assert_eq!(lifetime(200, &all[..2], t(0)), S(500));
        let ma = [
            ("date", d.as_str()),
            ("expires", exp.as_str()),
            ("cache-control", "max-age=100"),
        ];
        assert_eq!(lifetime(200, &ma, t(0)), S(100));
        assert_eq!(lifetime(200, &[("cache-control", "max-age=0")], t(0)), S(0));
        assert_eq!(
            lifetime(200, &[("cache-control", "max-age=bad")], t(0)),
            S(0)
        );
        assert_eq!(
            lifetime(200, &[("cache-control", "max-age=99999999999")], t(0)),
            S(u64::from(MAX_DELTA_SECONDS))
        );
    }

    #[test]
    fn lifetime_from_expires() {
        let (d, e) = (date(1000), date(1600));
        assert_eq!(
            lifetime(200, &[("date", &d), ("expires", &e)], t(0)),
            S(600)
        );
        // No Date: the response time stands in.
        assert_eq!(lifetime(200, &[("expires", &e)], t(1500)), S(100));
        assert_eq!(
            lifetime(200, &[("date", "garbage"), ("expires", &e)], t(1500)),
            S(100)
        );
        // Expires in the past, invalid, "0", or conflicting: stale.
        assert_eq!(
            lifetime(200, &[("date", &d), ("expires", &date(10))], t(0)),
            S(0)
        );
        assert_eq!(lifetime(200, &[("expires", "0")], t(0)), S(0));
        assert_eq!(lifetime(200, &[("expires", "tomorrow")], t(0)), S(0));
        assert_eq!(
            lifetime(
                200,
                &[("date", &d), ("expires", &e), ("expires", &date(9999))],
                t(0)
            ),
            S(0)
        );
        // The same value twice is fine.
        assert_eq!(
            lifetime(200, &[("date", &d), ("expires", &e), ("expires", &e)], t(0)),
            S(600)
        );
        // Other HTTP-date formats (RFC 9110 §5.6.7 examples).
        let h = [
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Sunday, 06-Nov-94 08:59:37 GMT"),
        ];
        assert_eq!(lifetime(200, &h, t(0)), S(600));
        let h = [
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Sun Nov  6 08:50:37 1994"),
        ];
        assert_eq!(lifetime(200, &h, t(0)), S(60));
    }

    #[test]
    fn lifetime_heuristic() {
        let d = date(100_000);
        let lm = date(0);
        assert_eq!(
            lifetime(200, &[("date", &d), ("last-modified", &lm)], t(0)),
            S(10_000)
        );
        // Capped at one day.
        let old = httpdate::fmt_http_date(UNIX_EPOCH);
        assert_eq!(
            lifetime(200, &[("date", &d), ("last-modified", &old)], t(0)),
            MAX_HEURISTIC_LIFETIME
        );
        // Only for heuristically cacheable statuses, or public.
        assert_eq!(
            lifetime(302, &[("date", &d), ("last-modified", &lm)], t(0)),
            S(0)
        );
        assert_eq!(
            lifetime(
                302,
                &[
                    ("date", &d),
                    ("last-modified", &lm),
                    ("cache-control", "public")
                ],
                t(0)
            ),
            S(10_000)
        );
        // Last-Modified in the future, missing or invalid: zero.
        assert_eq!(
            lifetime(200, &[("date", &lm), ("last-modified", &d)], t(0)),
            S(0)
        );
        assert_eq!(lifetime(200, &[("date", &d)], t(0)), S(0));
        assert_eq!(
            lifetime(200, &[("date", &d), ("last-modified", "yesterday")], t(0)),
            S(0)
        );
        assert_eq!(lifetime(404, &[], t(0)), S(0));
        // Missing Date: response time.
        assert_eq!(lifetime(200, &[("last-modified", &lm)], t(1000)), S(100));
    }

    // --- Age ----------------------------------------------------------------------------

    #[test]
    fn age_arithmetic() {
        // No Age, Date = response time, no delay: age is the resident time.
        let h = headers(&[("date", &date(100))]);
        assert_eq!(current_age(&h, t(100), t(100), t(130)), S(30));
        // Apparent age: Date 20 s before the response arrived.
        let h = headers(&[("date", &date(80))]);
        assert_eq!(current_age(&h, t(100), t(100), t(100)), S(20));
        // Age header plus response delay: 50 + (105 - 100) = 55 > apparent 25.
        let h = headers(&[("date", &date(80)), ("age", "50")]);
        assert_eq!(current_age(&h, t(100), t(105), t(105)), S(55));
        assert_eq!(current_age(&h, t(100), t(105), t(205)), S(155));
        // Apparent age wins when larger.
        let h = headers(&[("date", &date(0)), ("age", "5")]);
        assert_eq!(current_age(&h, t(100), t(101), t(101)), S(101));
    }

    #[test]
    fn age_odd_inputs() {
        // Date in the future (clock skew): apparent age 0.
        let h = headers(&[("date", &date(1000))]);
        assert_eq!(current_age(&h, t(100), t(100), t(110)), S(10));
        // now before the response time, request after response: zero contributions.
        assert_eq!(current_age(&HeaderMap::new(), t(200), t(100), t(50)), S(0));
        // Invalid Age ignored; several Ages: the largest.
        let h = headers(&[("age", "abc")]);
        assert_eq!(current_age(&h, t(0), t(0), t(0)), S(0));
        let h = headers(&[("age", "3"), ("age", "9"), ("age", "-1")]);
        assert_eq!(current_age(&h, t(0), t(0), t(0)), S(9));
        // Huge Age saturates at 2^31 seconds; no overflow with huge times either.
        let h = headers(&[("age", "999999999999999999999")]);
        assert_eq!(
            current_age(&h, t(0), t(0), t(0)),
            S(u64::from(MAX_DELTA_SECONDS))
        );
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000);
        assert!(current_age(&h, UNIX_EPOCH, UNIX_EPOCH, far) > S(1 << 40));
    }

    // --- Freshness ----------------------------------------------------------------------

    fn fresh(lifetime: u64, age: u64, resp: &str, req: &str) -> Freshness {
        freshness(S(lifetime), S(age), &cc(resp), &cc(req))
    }

    const STALE: Freshness = Freshness::Stale {
        may_serve_while_revalidate: false,
        may_serve_if_error: false,
    };

    #[test]
    fn fresh_and_stale() {
        assert_eq!(fresh(60, 0, "", ""), Freshness::Fresh);
        assert_eq!(fresh(60, 59, "", ""), Freshness::Fresh);
        assert_eq!(fresh(60, 60, "", ""), STALE);
        assert_eq!(fresh(0, 0, "", ""), STALE);
        assert_eq!(fresh(60, 1000, "", ""), STALE);
    }

    #[test]
    fn no_cache_forces_revalidation() {
        assert_eq!(fresh(60, 0, "no-cache", ""), Freshness::MustRevalidate);
        assert_eq!(
            fresh(60, 0, "no-cache=set-cookie", ""),
            Freshness::MustRevalidate
        );
        assert_eq!(fresh(60, 0, "", "no-cache"), Freshness::MustRevalidate);
        assert_eq!(
            fresh(60, 0, "", "no-cache, max-stale"),
            Freshness::MustRevalidate
        );
    }

    #[test]
    fn revalidate_directives_forbid_stale() {
        for resp in [
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage=60",
            "must-revalidate, stale-if-error=100, stale-while-revalidate=100",
        ] {
            assert_eq!(fresh(60, 10, resp, ""), Freshness::Fresh, "{resp}");
            assert_eq!(fresh(60, 61, resp, ""), Freshness::MustRevalidate, "{resp}");
            assert_eq!(
                fresh(60, 61, resp, "max-stale"),
                Freshness::MustRevalidate,
                "{resp}"
            );
        }
    }

    #[test]
    fn request_max_age() {
        assert_eq!(fresh(600, 100, "", "max-age=200"), Freshness::Fresh);
        assert_eq!(fresh(600, 200, "", "max-age=200"), Freshness::Fresh);
        assert_eq!(
            fresh(600, 201, "", "max-age=200"),
            Freshness::MustRevalidate
        );
        assert_eq!(fresh(600, 1, "", "max-age=0"), Freshness::MustRevalidate);
        assert_eq!(fresh(600, 1, "", "max-age=junk"), Freshness::MustRevalidate);
    }

    #[test]
    fn request_min_fresh() {
        assert_eq!(fresh(100, 50, "", "min-fresh=49"), Freshness::Fresh);
        assert_eq!(fresh(100, 50, "", "min-fresh=50"), STALE);
        assert_eq!(fresh(100, 50, "", "min-fresh=4294967295"), STALE);
        assert_eq!(
            fresh(100, 50, "must-revalidate", "min-fresh=60"),
            Freshness::MustRevalidate
        );
    }

    #[test]
    fn request_max_stale() {
        assert_eq!(
            fresh(60, 1_000_000, "", "max-stale"),
            Freshness::AcceptedStale
        );
        assert_eq!(fresh(60, 90, "", "max-stale=30"), Freshness::AcceptedStale);
        assert_eq!(fresh(60, 91, "", "max-stale=30"), STALE);
        assert_eq!(fresh(60, 61, "", "max-stale=bad"), STALE);
        assert_eq!(fresh(60, 10, "", "max-stale=0"), Freshness::Fresh);
    }

    #[test]
    fn stale_while_revalidate_and_if_error() {
        // RFC 5861 §3 example: max-age=600, stale-while-revalidate=30.
        let resp = "max-age=600, stale-while-revalidate=30";
        assert_eq!(fresh(600, 599, resp, ""), Freshness::Fresh);
        let swr = Freshness::Stale {
            may_serve_while_revalidate: true,
            may_serve_if_error: false,
        };
        assert_eq!(fresh(600, 630, resp, ""), swr);
        assert_eq!(fresh(600, 631, resp, ""), STALE);
        // RFC 5861 §4 example: max-age=600, stale-if-error=1200.
        let resp = "max-age=600, stale-if-error=1200";
        let sie = Freshness::Stale {
            may_serve_while_revalidate: false,
            may_serve_if_error: true,
        };
        assert_eq!(fresh(600, 1800, resp, ""), sie);
        assert_eq!(fresh(600, 1801, resp, ""), STALE);
        // stale-if-error from the request too.
        assert_eq!(fresh(600, 700, "", "stale-if-error=100"), sie);
        assert_eq!(fresh(600, 701, "", "stale-if-error=100"), STALE);
        let both = Freshness::Stale {
            may_serve_while_revalidate: true,
            may_serve_if_error: true,
        };
        assert_eq!(
            fresh(60, 70, "stale-while-revalidate=10, stale-if-error=10", ""),
            both
        );
    }

    // --- End to end ---------------------------------------------------------------------

    #[test]
    fn rfc_9111_style_walkthrough() {
        // Origin answers at t=1000 with Date t=998, Age 2, max-age=60; the request left at 999.
        let resp = headers(&[
            ("date", &date(998)),
            ("age", "2"),
            ("cache-control", "max-age=60, stale-while-revalidate=10"),
        ]);
        let resp_cc = CacheControl::parse(&resp);
        let life = freshness_lifetime(StatusCode::OK, &resp, &resp_cc, t(1000));
        assert_eq!(life, S(60));
        // corrected_initial_age = max(apparent 2, 2 + delay 1) = 3.
        assert_eq!(current_age(&resp, t(999), t(1000), t(1000)), S(3));
        let at = |now| {
            freshness(
                life,
                current_age(&resp, t(999), t(1000), t(now)),
                &resp_cc,
                &CacheControl::default(),
            )
        };
        assert_eq!(at(1056), Freshness::Fresh);
        assert_eq!(
            at(1057),
            Freshness::Stale {
                may_serve_while_revalidate: true,
                may_serve_if_error: false
            }
        );
        assert_eq!(at(1068), STALE);
    }
}
