//! Fuzzes `client_hello::parse`: never panics, `Incomplete` only below the buffering cap, and a
//! hello is decided by the bytes of its own records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maitred::listener::client_hello::{MAX_CLIENT_HELLO, Peek, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Peek::Incomplete) => assert!(data.len() < MAX_CLIENT_HELLO),
        Ok(Peek::Hello(hello)) => {
            assert!(hello.len <= data.len() && hello.len <= MAX_CLIENT_HELLO);
            let own = data.get(..hello.len).expect("len <= data.len()");
            assert_eq!(parse(own), Ok(Peek::Hello(hello)));
        }
        Err(_) => {}
    }
});
