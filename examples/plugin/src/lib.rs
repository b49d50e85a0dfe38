//! Example maitred plugin: adds `x-hello: <greeting>` to responses and answers `GET /hello`.
//!
//! Config: `config = { greeting = "hi there" }`.
use maitred_sdk::{Action, Config, DirectResponse, Plugin, Request, Response, export_plugin};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    greeting: String,
}

impl Plugin for Hello {
    fn init(config: Config) -> Result<Self, String> {
        let hello: Hello = config.get()?;
        maitred_sdk::validate::header_value(hello.greeting.as_bytes())?;
        Ok(hello)
    }

    fn on_request(&self, req: &Request) -> Action {
        if req.method() == "GET" && req.path() == "/hello" {
            let body = format!("{}\n", self.greeting);
            return DirectResponse::new(200)
                .header("content-type", "text/plain")
                .body(body)
                .into();
        }
        Action::Continue
    }

    fn on_response(&self, resp: &Response) {
        let _ = resp.set_header("x-hello", &self.greeting);
    }
}

export_plugin!(Hello);
