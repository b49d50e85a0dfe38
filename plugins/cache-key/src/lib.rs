//! maitred filter plugin `cache-key`: shapes how a route's cache keys, bypasses and keeps
//! responses. (Being written; see issue 5.)
use maitred_sdk::{Action, Config, Plugin, Request, export_plugin};

/// The plugin's config.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheKey {}

impl Plugin for CacheKey {
    fn init(config: Config) -> Result<Self, String> {
        config.get()
    }

    fn on_request(&self, _req: &Request) -> Action {
        Action::Continue
    }
}

export_plugin!(CacheKey);
