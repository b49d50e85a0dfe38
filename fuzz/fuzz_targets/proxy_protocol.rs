//! Fuzzes `proxy_protocol::parse`: never panics, never consumes more than it was given,
//! `Ok(None)` only below the buffering cap, a header is decided by its own bytes, and parsed
//! addresses survive a round trip through both encoders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maitred::listener::proxy_protocol::{Header, MAX_HEADER_LEN, encode_v1, encode_v2, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Some((header, consumed))) => {
            assert!(consumed <= data.len());
            let own = data.get(..consumed).expect("consumed <= data.len()");
            assert_eq!(parse(own), Ok(Some((header, consumed))));
            if let Header::Proxied {
                source,
                destination,
            } = header
            {
                let mut out = Vec::new();
                encode_v1(source, destination, &mut out);
                assert_eq!(parse(&out), Ok(Some((header, out.len()))));
                out.clear();
                encode_v2(source, destination, &mut out);
                assert_eq!(parse(&out), Ok(Some((header, out.len()))));
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(_) => {}
    }
});
