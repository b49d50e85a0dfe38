//! The plugin's configuration.

use serde::de::DeserializeOwned;

/// The plugin's `config` table from the maitred config file, as the host passes it (JSON).
///
/// Given to [`Plugin::init`](crate::Plugin::init); deserialise it into your own type with
/// [`get`](Config::get).
///
/// ```
/// use maitred_sdk::Config;
///
/// #[derive(serde::Deserialize)]
/// struct Cfg {
///     greeting: String,
///     #[serde(default)]
///     loud: bool,
/// }
///
/// let cfg: Cfg = Config::new(r#"{"greeting": "hi"}"#).get().unwrap();
/// assert_eq!(cfg.greeting, "hi");
/// assert!(!cfg.loud);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wraps a config given as JSON text; useful to test a plugin's `init` natively.
    ///
    /// ```
    /// let config = maitred_sdk::Config::new(r#"{"percent": 10}"#);
    /// assert_eq!(config.json(), r#"{"percent": 10}"#);
    /// ```
    pub fn new(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The config as the host sent it: a JSON object (`{}` when the plugin has no `config`).
    ///
    /// ```
    /// assert_eq!(maitred_sdk::Config::new("{}").json(), "{}");
    /// ```
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Whether the plugin was given no settings (`{}`, `null` or nothing).
    ///
    /// ```
    /// assert!(maitred_sdk::Config::new(" { } ").is_empty());
    /// assert!(!maitred_sdk::Config::new(r#"{"a": 1}"#).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self.value(), Ok(serde_json::Value::Null))
            || matches!(self.value(), Ok(serde_json::Value::Object(m)) if m.is_empty())
    }

    /// Deserialises the config into `T` with serde. No config (`null` or nothing) is read as
    /// an empty table, so a `T` whose fields all have defaults still loads.
    ///
    /// The error is a readable message starting with `invalid config: `, ready to return
    /// from `init`. Use `#[serde(deny_unknown_fields)]` to catch typos in key names.
    ///
    /// ```
    /// use maitred_sdk::Config;
    ///
    /// #[derive(serde::Deserialize, Debug)]
    /// #[serde(deny_unknown_fields)]
    /// struct Cfg {
    ///     percent: u8,
    /// }
    ///
    /// let err = Config::new(r#"{"percnt": 5}"#).get::<Cfg>().unwrap_err();
    /// assert!(err.starts_with("invalid config: unknown field `percnt`"), "{err}");
    /// ```
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, String> {
        parse(&self.json)
    }

    /// The config as a generic JSON value.
    ///
    /// ```
    /// let v = maitred_sdk::Config::new(r#"{"a": [1, 2]}"#).value().unwrap();
    /// assert_eq!(v["a"][1], 2);
    /// ```
    pub fn value(&self) -> Result<serde_json::Value, String> {
        parse(&self.json)
    }
}

/// Parses config JSON, treating blank text and `null` as `{}`, into a message-only error.
fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let json = match json.trim() {
        "" | "null" => "{}",
        other => other,
    };
    serde_json::from_str(json).map_err(|e| format!("invalid config: {}", error_message(&e)))
}

/// serde_json's message without its " at line L column C" suffix: the JSON was written by the
/// host, so positions in it mean nothing to the user.
fn error_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.line() == 0 {
        return text;
    }
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        percent: u8,
    }

    #[test]
    fn empty_configs_read_as_empty_table() {
        for json in ["", "  ", "null", "{}"] {
            let cfg: Cfg = Config::new(json).get().unwrap();
            assert_eq!(
                cfg,
                Cfg {
                    name: None,
                    percent: 0
                },
                "{json:?}"
            );
            assert!(Config::new(json).is_empty(), "{json:?}");
        }
    }

    #[test]
    fn reads_fields() {
        let cfg: Cfg = Config::new(r#"{"name":"x","percent":7}"#).get().unwrap();
        assert_eq!(
            cfg,
            Cfg {
                name: Some("x".into()),
                percent: 7
            }
        );
        assert!(!Config::new(r#"{"name":"x"}"#).is_empty());
    }

    #[test]
    fn errors_have_no_positions() {
        let err = Config::new(r#"{"percent": 300}"#).get::<Cfg>().unwrap_err();
        assert!(
            err.starts_with("invalid config: invalid value: integer `300`"),
            "{err}"
        );
        assert!(!err.contains("line"), "{err}");
        let err = Config::new(r#"{"nope": 1}"#).get::<Cfg>().unwrap_err();
        assert!(
            err.starts_with("invalid config: unknown field `nope`"),
            "{err}"
        );
        let err = Config::new("{").get::<Cfg>().unwrap_err();
        assert!(err.starts_with("invalid config: EOF"), "{err}");
    }
}
