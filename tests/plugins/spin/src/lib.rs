//! Test plugin for the host's containment tests: loops forever in `on_request` when the
//! request has an `x-spin` header (the host must interrupt it); otherwise sets request header
//! `x-spin-plugin: passed`. No config.
use std::hint::black_box;

use maitred_sdk::{Action, Config, Phases, Plugin, Request, export_plugin};

struct Spin;

impl Plugin for Spin {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Spin)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        if req.has_header("x-spin") {
            // `black_box` keeps the optimiser from proving the loop does nothing.
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        req.set_header("x-spin-plugin", "passed")
            .expect("set x-spin-plugin");
        Action::Continue
    }
}

export_plugin!(Spin);
