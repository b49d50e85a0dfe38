//! Fuzzes the cache policy's header parsing and arithmetic: arbitrary `Cache-Control`,
//! `Expires`, `Date`, `Age`, `Last-Modified` and `Vary` values (split on newlines into
//! header lines) never panic, and a parsed `Cache-Control` decides the same way however
//! often it is parsed.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use maitred::cache::policy::{
    CacheControl, current_age, freshness, freshness_lifetime, is_storable,
};
use std::time::{Duration, UNIX_EPOCH};

const NAMES: [&str; 6] = [
    "cache-control",
    "expires",
    "date",
    "age",
    "last-modified",
    "vary",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(NAMES[i % NAMES.len()], value);
        }
    }
    let cc = CacheControl::parse(&headers);
    assert_eq!(cc, CacheControl::parse(&headers));
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = is_storable(&Method::GET, &headers, StatusCode::OK, &headers, &cc, &cc);
    let lifetime = freshness_lifetime(StatusCode::OK, &headers, &cc, now);
    let age = current_age(&headers, now, now, now + Duration::from_secs(5));
    let _ = freshness(lifetime, age, &cc, &cc);
});
