//! ModSecurity operators (`@rx`, `@pm`, `@streq`, ...): parsed and compiled once from a rule's
//! operator string, then evaluated against each transformed value.

use std::borrow::Cow;
use std::path::Path;

/// Expands macros like `%{tx.anomaly_score}` / `%{REQUEST_HEADERS.host}` at match time.
pub trait Expand {
    /// Returns `text` with every macro replaced by its current value.
    fn expand<'a>(&self, text: &'a str) -> Cow<'a, str>;
}

/// Where an operator loads files from (`@pmFromFile x.data` is relative to the rule file's dir).
pub struct LoadContext<'a> {
    /// The directory of the rule file that holds the rule.
    pub rule_dir: &'a Path,
}

/// A parsed operator: its name, whether it is negated (`!@`), and its compiled argument.
pub struct Operator {
    name: String,
    negated: bool,
}

impl Operator {
    /// `spec` is the operator string as written in the rule, e.g. "@rx ^(?i)foo", "!@streq x",
    /// "@pmFromFile scanners.data", or a bare regex without '@' (means @rx).
    /// Errors say what is unsupported or invalid (the engine reports it with the rule id).
    pub fn parse(spec: &str, ctx: &LoadContext) -> Result<Operator, String> {
        let _ = ctx;
        let (negated, rest) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let name = match rest.strip_prefix('@') {
            Some(r) => r.split_whitespace().next().unwrap_or("").to_string(),
            None => "rx".to_string(),
        };
        match name.as_str() {
            "unconditionalMatch" | "noMatch" => Ok(Operator { name, negated }),
            _ => Err(format!("unsupported operator @{name}")),
        }
    }

    /// Evaluates against one value. Returns Some(captures) on a match (after negation):
    /// captures[0] is the matched text (whole regex match / matched phrase / the value), then
    /// regex groups 1..=9 for @rx (used by the `capture` action as TX.0..TX.9); None otherwise.
    pub fn evaluate(&self, value: &[u8], env: &dyn Expand) -> Option<Vec<Vec<u8>>> {
        let _ = env;
        let matched = self.name == "unconditionalMatch";
        if matched != self.negated {
            Some(vec![value.to_vec()])
        } else {
            None
        }
    }

    /// The operator's name without '@', e.g. "rx", for logs.
    pub fn name(&self) -> &str {
        &self.name
    }
}
