//! Test plugin that reads request bodies: it asks for the `request-body` phase, reports the
//! body's length in `x-body-len` (`none` when the host gave it none), and answers 403 when the
//! body contains `evil`. No config.
use maitred_sdk::{Action, Config, DirectResponse, Phases, Plugin, Request, export_plugin};

struct BodyProbe;

impl Plugin for BodyProbe {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(BodyProbe)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST | Phases::REQUEST_BODY
    }

    fn on_request(&self, req: &Request) -> Action {
        let body = req.body();
        if body
            .as_ref()
            .is_some_and(|b| b.windows(4).any(|w| w == b"evil"))
        {
            return DirectResponse::new(403).body("blocked\n").into();
        }
        let len = body.map_or("none".to_string(), |b| b.len().to_string());
        let _ = req.set_header("x-body-len", len);
        Action::Continue
    }
}

export_plugin!(BodyProbe);
