//! Test plugin for the host's containment tests: allocates memory without end in
//! `on_request` when the request has an `x-hog` header (the host's memory limit must stop
//! it, which traps); otherwise sets request header `x-hog-plugin: passed`. No config.
use std::cell::RefCell;
use std::hint::black_box;

use maitred_sdk::{Action, Config, Phases, Plugin, Request, export_plugin};

const MIB: usize = 1 << 20;

thread_local! {
    /// Everything allocated so far; kept so that nothing is ever freed.
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

struct Hog;

impl Plugin for Hog {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Hog)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        if req.has_header("x-hog") {
            HOARD.with(|hoard| {
                loop {
                    // Written with non-zero bytes so every page is really touched.
                    let chunk = black_box(vec![0xa5u8; MIB]);
                    hoard.borrow_mut().push(chunk);
                }
            });
        }
        req.set_header("x-hog-plugin", "passed")
            .expect("set x-hog-plugin");
        Action::Continue
    }
}

export_plugin!(Hog);
