//! Macro text such as `tx.%{rule.id}-%{MATCHED_VAR_NAME}` or `%{tx.critical_anomaly_score}`,
//! parsed once at init and expanded per request.
use std::borrow::Cow;

/// A macro reference `%{collection.key}` or `%{VARIABLE}`, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroRef {
    /// `tx`, `matched_var`, `rule`, `request_headers`, ...
    pub collection: String,
    /// The part after the first dot, if any.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Macro(MacroRef),
}

/// Resolves macro references to their current values.
pub trait Lookup {
    /// The value of `%{r}`, or `None` when it is not set (expands to nothing).
    fn lookup(&self, r: &MacroRef) -> Option<Cow<'_, [u8]>>;
}

/// A [`Lookup`] where nothing is set (for texts compared at init).
pub struct NoValues;

impl Lookup for NoValues {
    fn lookup(&self, _: &MacroRef) -> Option<Cow<'_, [u8]>> {
        None
    }
}

/// Text with `%{...}` references, split into parts at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroText {
    parts: Vec<Part>,
}

/// Collections and variables a macro may name (the rest are reported at init).
const KNOWN: &[&str] = &[
    "tx",
    "rule",
    "matched_var",
    "matched_var_name",
    "matched_vars",
    "matched_vars_names",
    "request_headers",
    "request_cookies",
    "args",
    "args_get",
    "args_post",
    "request_line",
    "request_uri",
    "request_uri_raw",
    "request_method",
    "request_protocol",
    "request_filename",
    "request_basename",
    "query_string",
    "remote_addr",
    "remote_port",
    "server_name",
    "unique_id",
    "duration",
    "reqbody_error",
    "reqbody_error_msg",
    "reqbody_processor",
    "multipart_strict_error",
    "multipart_unmatched_boundary",
    "files_combined_size",
    "args_combined_size",
    "request_body_length",
];

/// Persistent collections (ModSecurity keeps them across requests): this engine has none,
/// so they read as empty and writes to them are ignored.
pub const PERSISTENT: &[&str] = &["ip", "global", "session", "user", "resource"];

impl MacroText {
    /// Splits `text` into literals and references; unknown collections (`ip`, `global`,
    /// ...) are errors.
    pub fn parse(text: &str) -> Result<MacroText, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let inner = rest[start + 2..start + 2 + len].to_ascii_lowercase();
            let (collection, key) = match inner.split_once('.') {
                Some((c, k)) => (c.to_string(), Some(k.to_string())),
                None => (inner, None),
            };
            if !KNOWN.contains(&collection.as_str()) && !PERSISTENT.contains(&collection.as_str()) {
                return Err(format!("unsupported macro %{{{collection}}}"));
            }
            parts.push(Part::Macro(MacroRef { collection, key }));
            rest = &rest[start + 3 + len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(MacroText { parts })
    }

    /// Whether it contains no reference.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Expands each reference with `lookup` (a missing value expands to nothing).
    pub fn expand<'a>(&'a self, lookup: &dyn Lookup) -> Cow<'a, str> {
        match self.parts.as_slice() {
            [] => Cow::Borrowed(""),
            [Part::Literal(s)] => Cow::Borrowed(s),
            parts => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Literal(s) => out.push_str(s),
                        Part::Macro(m) => {
                            if let Some(v) = lookup.lookup(m) {
                                out.push_str(&String::from_utf8_lossy(&v));
                            }
                        }
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Lookup for Fixed {
        fn lookup(&self, r: &MacroRef) -> Option<Cow<'_, [u8]>> {
            match (r.collection.as_str(), r.key.as_deref()) {
                ("rule", Some("id")) => Some(Cow::Borrowed(b"942100")),
                ("matched_var_name", None) => Some(Cow::Owned(b"ARGS:a".to_vec())),
                _ => None,
            }
        }
    }

    #[test]
    fn parses_and_expands() {
        let m = MacroText::parse("tx.%{rule.id}-X-%{MATCHED_VAR_NAME}").unwrap();
        assert!(!m.is_literal());
        assert_eq!(m.expand(&Fixed), "tx.942100-X-ARGS:a");
        assert!(MacroText::parse("plain").unwrap().is_literal());
        assert_eq!(
            MacroText::parse("%{tx.missing}").unwrap().expand(&Fixed),
            ""
        );
    }

    #[test]
    fn unknown_collections_are_errors() {
        assert!(MacroText::parse("%{geo.country_code}").is_err());
        assert!(MacroText::parse("%{ip.reput_block_reason}").is_ok());
        assert!(MacroText::parse("%{tx.ok").unwrap().is_literal());
    }
}
