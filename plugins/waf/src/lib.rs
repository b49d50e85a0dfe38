//! maitred filter plugin `waf` (being written; see issue 7).
use maitred_sdk::{Config, Plugin, export_plugin};

mod injection;
pub mod operator;
pub mod transform;

/// The plugin's config.
#[derive(serde::Deserialize)]
struct Placeholder {}

impl Plugin for Placeholder {
    fn init(config: Config) -> Result<Self, String> {
        config.get()
    }
}

export_plugin!(Placeholder);
