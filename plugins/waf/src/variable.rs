//! Rule targets: the variables a rule inspects (`ARGS|REQUEST_HEADERS:User-Agent|!ARGS:id|&TX:x`),
//! with key and regex selectors, exclusions and counts.
use regex::Regex;

/// A variable or collection the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are ModSecurity's
pub enum Var {
    Args,
    ArgsNames,
    ArgsGet,
    ArgsGetNames,
    ArgsPost,
    ArgsPostNames,
    ArgsCombinedSize,
    RequestUri,
    RequestUriRaw,
    RequestFilename,
    RequestBasename,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    QueryString,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    RequestBody,
    RequestBodyLength,
    Files,
    FilesNames,
    FilesSizes,
    FilesCombinedSize,
    Tx,
    RemoteAddr,
    RemotePort,
    ServerName,
    UniqueId,
    Duration,
    MatchedVar,
    MatchedVars,
    MatchedVarName,
    MatchedVarsNames,
    ReqbodyProcessor,
    ReqbodyError,
    ReqbodyErrorMsg,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    MultipartPartHeaders,
    Xml,
}

/// Every variable with its SecLang name.
const NAMES: &[(&str, Var)] = &[
    ("ARGS", Var::Args),
    ("ARGS_NAMES", Var::ArgsNames),
    ("ARGS_GET", Var::ArgsGet),
    ("ARGS_GET_NAMES", Var::ArgsGetNames),
    ("ARGS_POST", Var::ArgsPost),
    ("ARGS_POST_NAMES", Var::ArgsPostNames),
    ("ARGS_COMBINED_SIZE", Var::ArgsCombinedSize),
    ("REQUEST_URI", Var::RequestUri),
    ("REQUEST_URI_RAW", Var::RequestUriRaw),
    ("REQUEST_FILENAME", Var::RequestFilename),
    ("REQUEST_BASENAME", Var::RequestBasename),
    ("REQUEST_LINE", Var::RequestLine),
    ("REQUEST_METHOD", Var::RequestMethod),
    ("REQUEST_PROTOCOL", Var::RequestProtocol),
    ("QUERY_STRING", Var::QueryString),
    ("REQUEST_HEADERS", Var::RequestHeaders),
    ("REQUEST_HEADERS_NAMES", Var::RequestHeadersNames),
    ("REQUEST_COOKIES", Var::RequestCookies),
    ("REQUEST_COOKIES_NAMES", Var::RequestCookiesNames),
    ("REQUEST_BODY", Var::RequestBody),
    ("REQUEST_BODY_LENGTH", Var::RequestBodyLength),
    ("FILES", Var::Files),
    ("FILES_NAMES", Var::FilesNames),
    ("FILES_SIZES", Var::FilesSizes),
    ("FILES_COMBINED_SIZE", Var::FilesCombinedSize),
    ("TX", Var::Tx),
    ("REMOTE_ADDR", Var::RemoteAddr),
    ("REMOTE_PORT", Var::RemotePort),
    ("SERVER_NAME", Var::ServerName),
    ("UNIQUE_ID", Var::UniqueId),
    ("DURATION", Var::Duration),
    ("MATCHED_VAR", Var::MatchedVar),
    ("MATCHED_VARS", Var::MatchedVars),
    ("MATCHED_VAR_NAME", Var::MatchedVarName),
    ("MATCHED_VARS_NAMES", Var::MatchedVarsNames),
    ("REQBODY_PROCESSOR", Var::ReqbodyProcessor),
    ("REQBODY_ERROR", Var::ReqbodyError),
    ("REQBODY_PROCESSOR_ERROR", Var::ReqbodyError),
    ("REQBODY_ERROR_MSG", Var::ReqbodyErrorMsg),
    ("MULTIPART_STRICT_ERROR", Var::MultipartStrictError),
    (
        "MULTIPART_UNMATCHED_BOUNDARY",
        Var::MultipartUnmatchedBoundary,
    ),
    ("MULTIPART_PART_HEADERS", Var::MultipartPartHeaders),
    ("XML", Var::Xml),
];

/// Persistent collections ModSecurity keeps across requests; the engine has none.
const PERSISTENT: &[&str] = &["IP", "GLOBAL", "SESSION", "USER", "RESOURCE", "GEO"];

impl Var {
    /// The variable named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Result<Var, String> {
        if let Some((_, var)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Ok(*var);
        }
        if PERSISTENT.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "variable {} (persistent collections are not supported)",
                name.to_uppercase()
            ));
        }
        Err(format!("unsupported variable {name}"))
    }

    /// Its SecLang name, e.g. `ARGS`.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Whether it holds named items (so a `:key` selector applies).
    pub fn is_collection(self) -> bool {
        use Var::*;
        matches!(
            self,
            Args | ArgsNames
                | ArgsGet
                | ArgsGetNames
                | ArgsPost
                | ArgsPostNames
                | RequestHeaders
                | RequestHeadersNames
                | RequestCookies
                | RequestCookiesNames
                | Files
                | FilesNames
                | FilesSizes
                | Tx
                | MatchedVars
                | MatchedVarsNames
                | MultipartPartHeaders
                | Xml
        )
    }
}

/// Which items of a collection a target or exclusion takes.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Every item (`ARGS`).
    All,
    /// Items whose name equals this, compared case-insensitively (`ARGS:id`); stored lowercase.
    Key(String),
    /// Items whose name matches (`ARGS:/^id_/`).
    Regex(Regex),
}

impl Selector {
    /// Whether an item named `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k) => k.eq_ignore_ascii_case(name),
            Selector::Regex(re) => re.is_match(name),
        }
    }

    fn parse(var: Var, text: Option<&str>) -> Result<Selector, String> {
        let Some(text) = text else {
            return Ok(Selector::All);
        };
        if var == Var::Xml {
            // XPath expressions: the engine only offers the document's text (see the XML docs).
            return Ok(Selector::All);
        }
        if !var.is_collection() {
            return Err(format!("{} takes no selector (got :{text})", var.name()));
        }
        if let Some(inner) = text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
            let re = regex::RegexBuilder::new(inner)
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("selector /{inner}/: {e}"))?;
            return Ok(Selector::Regex(re));
        }
        Ok(Selector::Key(text.to_ascii_lowercase()))
    }
}

/// One variable in a rule's target list.
#[derive(Debug, Clone)]
pub struct Target {
    /// The variable.
    pub var: Var,
    /// Which of its items.
    pub selector: Selector,
    /// `&VAR`: the number of selected items instead of their values.
    pub count: bool,
}

/// A rule's targets: what it inspects, minus what its `!` entries exclude.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The targets, in the order written.
    pub include: Vec<Target>,
    /// `!VAR:key` entries: items of `VAR` left out.
    pub exclude: Vec<(Var, Selector)>,
}

impl Targets {
    /// Parses `ARGS|!ARGS:id|&TX:x|REQUEST_HEADERS:/^x-/` (`|` inside `/regex/` selectors
    /// does not split; an entry may be wrapped in single quotes).
    pub fn parse(text: &str) -> Result<Targets, String> {
        let mut targets = Targets::default();
        for entry in split_targets(text) {
            let entry = entry.trim();
            let entry = entry
                .strip_prefix('\'')
                .and_then(|e| e.strip_suffix('\''))
                .unwrap_or(entry);
            if entry.is_empty() {
                continue;
            }
            let (negated, entry) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            let (count, entry) = match entry.strip_prefix('&') {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            let (name, key) = match entry.split_once(':') {
                Some((n, k)) => (n, Some(k)),
                None => (entry, None),
            };
            let var = Var::from_name(name)?;
            let selector = Selector::parse(var, key)?;
            if negated {
                targets.exclude.push((var, selector));
            } else {
                targets.include.push(Target {
                    var,
                    selector,
                    count,
                });
            }
        }
        if targets.include.is_empty() {
            return Err(format!("no variables in {text:?}"));
        }
        Ok(targets)
    }
}

/// Parses one exclusion target such as `ARGS:json` or `REQUEST_COOKIES:/^sess/` (as used by
/// `ctl:ruleRemoveTargetById` and the plugin's `remove_targets`).
pub fn parse_exclusion(text: &str) -> Result<(Var, Selector), String> {
    let (name, key) = match text.trim().split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (text.trim(), None),
    };
    let var = Var::from_name(name)?;
    Ok((var, Selector::parse(var, key)?))
}

fn split_targets(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'|' => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            // A regex selector: skip to its closing unescaped slash.
            b'/' if i > 0 && bytes[i - 1] == b':' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'/' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_selectors_exclusions_and_counts() {
        let t = Targets::parse(
            "REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|ARGS:/^id_(a|b)/|&TX:x|ARGS_NAMES|'XML:/*'",
        )
        .unwrap();
        assert_eq!(t.include.len(), 5);
        assert_eq!(t.include[0].var, Var::RequestCookies);
        assert!(matches!(t.include[1].selector, Selector::Regex(_)));
        assert!(t.include[1].selector.selects("ID_b"));
        assert!(!t.include[1].selector.selects("x_id_a"));
        assert!(t.include[2].count);
        assert!(t.include[2].selector.selects("X"));
        assert_eq!(t.include[4].var, Var::Xml);
        assert_eq!(t.exclude.len(), 1);
        assert!(t.exclude[0].1.selects("__utma"));
    }

    #[test]
    fn header_keys_are_case_insensitive() {
        let t = Targets::parse("REQUEST_HEADERS:User-Agent").unwrap();
        assert!(t.include[0].selector.selects("user-agent"));
    }

    #[test]
    fn unsupported_variables_are_errors() {
        assert!(
            Targets::parse("IP:REPUT_BLOCK_FLAG")
                .unwrap_err()
                .contains("persistent")
        );
        assert!(
            Targets::parse("RESPONSE_BODY")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(Targets::parse("REQUEST_METHOD:x").is_err());
        assert!(Targets::parse("!ARGS:x").is_err());
    }

    #[test]
    fn exclusion_targets() {
        let (var, sel) = parse_exclusion("ARGS:json.a").unwrap();
        assert_eq!(var, Var::Args);
        assert!(sel.selects("JSON.A"));
        assert!(matches!(
            parse_exclusion("REQUEST_BODY").unwrap().1,
            Selector::All
        ));
    }
}
