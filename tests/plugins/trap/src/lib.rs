//! Test plugin for the host's containment tests: traps (panics) in `on_request` when the
//! request has an `x-trap` header, and writes to stdout (which plugins may not use: the host
//! must contain the failure) when it has `x-print`; otherwise sets request header `x-trap-plugin: passed`.
//! No config.
use maitred_sdk::{Action, Config, Phases, Plugin, Request, export_plugin};

struct Trap;

impl Plugin for Trap {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Trap)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        if req.has_header("x-trap") {
            panic!("trap plugin: asked to trap by the x-trap header");
        }
        if req.has_header("x-print") {
            println!("trap plugin: writing to stdout");
        }
        req.set_header("x-trap-plugin", "passed")
            .expect("set x-trap-plugin");
        Action::Continue
    }
}

export_plugin!(Trap);
