//! Test plugin that reads a file at `init` (possible only inside the plugin's `files`
//! directories) and sets `x-file` to its contents on every request.
//!
//! Config: `{ path = "/abs/path/to/file" }`; `init` fails with the I/O error when the file
//! cannot be read.
use maitred_sdk::{Action, Config, Phases, Plugin, Request, export_plugin};

struct FileProbe {
    contents: String,
}

#[derive(serde::Deserialize)]
struct Settings {
    path: String,
}

impl Plugin for FileProbe {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.get()?;
        let contents = std::fs::read_to_string(&settings.path)
            .map_err(|e| format!("cannot read {}: {e}", settings.path))?;
        Ok(FileProbe {
            contents: contents.trim().to_owned(),
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&self, req: &Request) -> Action {
        let _ = req.set_header("x-file", &self.contents);
        Action::Continue
    }
}

export_plugin!(FileProbe);
