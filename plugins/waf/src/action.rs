//! A rule's actions (`id:942100,phase:2,block,t:none,setvar:'tx.x=+5',...`) parsed into what
//! the engine does: metadata, flow, transformations, variable updates and runtime controls.
use crate::macros::MacroText;
use crate::transform::Transform;
use crate::variable::{Selector, Var, parse_exclusion};

/// What happens to the request when a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruptive {
    /// Go on with the next rule.
    Pass,
    /// Whatever the phase's `SecDefaultAction` says (`pass` when there is none).
    Block,
    /// Reject the request now (`deny`, `drop`).
    Deny,
    /// Stop evaluating rules and let the request through.
    Allow,
}

/// How `setvar` changes a TX variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// `tx.x=v`
    Set,
    /// `tx.x=+v`
    Add,
    /// `tx.x=-v`
    Sub,
    /// `!tx.x`
    Delete,
}

/// One `setvar` on the TX collection.
#[derive(Debug, Clone)]
pub struct SetVar {
    /// The variable name after `tx.` (may contain macros; lowercased when expanded).
    pub name: MacroText,
    /// The operation.
    pub op: SetOp,
    /// The value (may contain macros).
    pub value: MacroText,
}

/// The engine mode a rule may switch to for the rest of the request (`ctl:ruleEngine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    /// Evaluate and enforce.
    On,
    /// Evaluate and log, never block.
    DetectionOnly,
    /// Stop evaluating.
    Off,
}

/// Which parser reads the request body (`ctl:requestBodyProcessor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart,
    /// JSON, flattened to `json.a.b` arguments.
    Json,
    /// XML: its text is offered as `XML:/*`.
    Xml,
}

impl BodyProcessor {
    /// Its ModSecurity name (the value of `REQBODY_PROCESSOR`).
    pub fn name(self) -> &'static str {
        match self {
            BodyProcessor::UrlEncoded => "URLENCODED",
            BodyProcessor::Multipart => "MULTIPART",
            BodyProcessor::Json => "JSON",
            BodyProcessor::Xml => "XML",
        }
    }
}

/// Rule ids named by a `ctl` or an exclusion: single ids and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSet(pub Vec<(u32, u32)>);

impl IdSet {
    /// Parses `942100`, `942100-942199` or several separated by spaces.
    pub fn parse(text: &str) -> Result<IdSet, String> {
        let mut ranges = Vec::new();
        for part in text.split_whitespace() {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let parse = |s: &str| {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("bad rule id {part:?}"))
            };
            ranges.push((parse(a)?, parse(b)?));
        }
        if ranges.is_empty() {
            return Err("no rule id".into());
        }
        Ok(IdSet(ranges))
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&id))
    }
}

/// The rules a removal applies to.
#[derive(Debug, Clone)]
pub enum RuleRef {
    /// By id.
    Ids(IdSet),
    /// By tag (compared case-insensitively).
    Tag(String),
}

/// A runtime control (`ctl:name=value`) the engine honours.
#[derive(Debug, Clone)]
pub enum Ctl {
    /// `ctl:ruleRemoveById` / `ctl:ruleRemoveByTag`: those rules do not run for this request.
    RemoveRules(RuleRef),
    /// `ctl:ruleRemoveTargetById` / `...ByTag`: those rules skip this target for this request.
    RemoveTarget(RuleRef, Var, Selector),
    /// `ctl:ruleEngine`.
    Engine(EngineMode),
    /// `ctl:requestBodyProcessor`.
    BodyProcessor(BodyProcessor),
    /// `ctl:forceRequestBodyVariable`: fill REQUEST_BODY whatever the processor.
    ForceBodyVariable(bool),
}

/// Something a matching rule does besides deciding the request's fate, in the order written.
#[derive(Debug, Clone)]
pub enum Effect {
    /// `setvar`.
    SetVar(SetVar),
    /// `ctl`.
    Ctl(Ctl),
}

/// Everything a rule's action list says.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    /// `id`.
    pub id: Option<u32>,
    /// `phase` (1-5).
    pub phase: Option<u8>,
    /// `pass`, `block`, `deny`, `allow`, `drop`.
    pub disruptive: Option<Disruptive>,
    /// `status` for `deny`.
    pub status: Option<u16>,
    /// `chain`: the next SecRule is part of this one.
    pub chain: bool,
    /// `t:none` seen: inherited transformations are dropped.
    pub transform_reset: bool,
    /// `t:` transformations after the last `t:none`.
    pub transforms: Vec<Transform>,
    /// `capture`: @rx groups go to TX.0-TX.9.
    pub capture: bool,
    /// `multiMatch`: the operator also runs after each transformation.
    pub multi_match: bool,
    /// `msg`.
    pub msg: Option<MacroText>,
    /// `logdata`.
    pub logdata: Option<MacroText>,
    /// `tag`s.
    pub tags: Vec<String>,
    /// `severity`.
    pub severity: Option<String>,
    /// `log` (true) / `nolog` (false).
    pub log: Option<bool>,
    /// `skipAfter`: the marker to continue after.
    pub skip_after: Option<String>,
    /// `skip`: how many following rules to skip.
    pub skip: u32,
    /// `setvar` and `ctl`, in order.
    pub effects: Vec<Effect>,
    /// `setvar`s on persistent collections (`ip.*`, `global.*`, ...), which are ignored:
    /// nothing outlives a request here.
    pub persistent_setvars: usize,
}

/// Actions accepted and ignored: logging and metadata the engine has no use for, and state
/// that does not outlive a request here.
const IGNORED: &[&str] = &[
    "ver",
    "rev",
    "maturity",
    "accuracy",
    "auditlog",
    "noauditlog",
    "expirevar",
    "initcol",
    "setenv",
    "sanitisearg",
    "sanitisematched",
    "sanitisematchedbytes",
    "sanitiserequestheader",
    "sanitiseresponseheader",
    "setuid",
    "setsid",
    "deprecatevar",
];

impl Actions {
    /// Parses a rule's action list. Unsupported actions and bad values are errors.
    pub fn parse(text: &str) -> Result<Actions, String> {
        let mut a = Actions::default();
        for (name, value) in crate::seclang::split_actions(text)? {
            let lower = name.to_ascii_lowercase();
            let need = |what: &str| -> Result<&str, String> {
                value
                    .as_deref()
                    .ok_or_else(|| format!("action {what} needs a value"))
            };
            match lower.as_str() {
                "id" => {
                    let v = need("id")?;
                    a.id = Some(v.parse().map_err(|_| format!("bad id {v:?}"))?);
                }
                "phase" => a.phase = Some(parse_phase(need("phase")?)?),
                "pass" => a.disruptive = Some(Disruptive::Pass),
                "block" => a.disruptive = Some(Disruptive::Block),
                "deny" | "drop" => a.disruptive = Some(Disruptive::Deny),
                "allow" => a.disruptive = Some(Disruptive::Allow),
                "status" => {
                    let v = need("status")?;
                    a.status = Some(v.parse().map_err(|_| format!("bad status {v:?}"))?);
                }
                "chain" => a.chain = true,
                "t" => {
                    let v = need("t")?;
                    let t = Transform::parse(v)
                        .ok_or_else(|| format!("unsupported transformation t:{v}"))?;
                    if t == Transform::None {
                        a.transform_reset = true;
                        a.transforms.clear();
                    } else {
                        a.transforms.push(t);
                    }
                }
                "capture" => a.capture = true,
                "multimatch" => a.multi_match = true,
                "msg" => a.msg = Some(MacroText::parse(need("msg")?)?),
                "logdata" => a.logdata = Some(MacroText::parse(need("logdata")?)?),
                "tag" => a.tags.push(need("tag")?.to_string()),
                "severity" => a.severity = Some(need("severity")?.to_string()),
                "log" => a.log = Some(true),
                "nolog" => a.log = Some(false),
                "skipafter" => a.skip_after = Some(need("skipAfter")?.to_string()),
                "skip" => {
                    let v = need("skip")?;
                    a.skip = v.parse().map_err(|_| format!("bad skip {v:?}"))?;
                }
                "setvar" => match parse_setvar(need("setvar")?)? {
                    Some(sv) => a.effects.push(Effect::SetVar(sv)),
                    None => a.persistent_setvars += 1,
                },
                "ctl" => {
                    if let Some(ctl) = parse_ctl(need("ctl")?)? {
                        a.effects.push(Effect::Ctl(ctl));
                    }
                }
                _ if IGNORED.contains(&lower.as_str()) => {}
                _ => return Err(format!("unsupported action {name}")),
            }
        }
        Ok(a)
    }
}

fn parse_phase(v: &str) -> Result<u8, String> {
    match v.to_ascii_lowercase().as_str() {
        "request" => Ok(2),
        "response" => Ok(4),
        "logging" => Ok(5),
        n => match n.parse::<u8>() {
            Ok(p @ 1..=5) => Ok(p),
            _ => Err(format!("bad phase {v:?}")),
        },
    }
}

/// `tx.name=value`, `tx.name=+value`, `tx.name=-value`, `!tx.name`, `tx.name` (sets 1);
/// `None` for a persistent collection.
fn parse_setvar(text: &str) -> Result<Option<SetVar>, String> {
    let (delete, text) = match text.trim().strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text.trim()),
    };
    let (target, op, value) = match text.split_once('=') {
        _ if delete => (text, SetOp::Delete, ""),
        Some((t, v)) => match (v.strip_prefix('+'), v.strip_prefix('-')) {
            (Some(v), _) => (t, SetOp::Add, v),
            (_, Some(v)) => (t, SetOp::Sub, v),
            _ => (t, SetOp::Set, v),
        },
        None => (text, SetOp::Set, "1"),
    };
    let (collection, name) = target
        .split_once('.')
        .ok_or_else(|| format!("setvar {text:?}: no collection"))?;
    let collection = collection.trim().to_ascii_lowercase();
    if crate::macros::PERSISTENT.contains(&collection.as_str()) {
        return Ok(None);
    }
    if collection != "tx" {
        return Err(format!("setvar on unknown collection {collection}"));
    }
    Ok(Some(SetVar {
        name: MacroText::parse(name.trim())?,
        op,
        value: MacroText::parse(value)?,
    }))
}

/// Parses `name=value`; `Ok(None)` for controls that have no effect here (audit logging,
/// body limits and access, which the host decides).
fn parse_ctl(text: &str) -> Result<Option<Ctl>, String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("ctl:{text}: no value"))?;
    let value = value.trim();
    let target = |v: &str| -> Result<(String, Var, Selector), String> {
        let (rules, target) = v
            .split_once(';')
            .ok_or_else(|| format!("ctl:{name}={v}: expected RULES;TARGET"))?;
        let (var, sel) = parse_exclusion(target)?;
        Ok((rules.to_string(), var, sel))
    };
    let ctl = match name.trim().to_ascii_lowercase().as_str() {
        "ruleremovebyid" => Ctl::RemoveRules(RuleRef::Ids(IdSet::parse(value)?)),
        "ruleremovebytag" => Ctl::RemoveRules(RuleRef::Tag(value.to_string())),
        "ruleremovetargetbyid" => {
            let (ids, var, sel) = target(value)?;
            Ctl::RemoveTarget(RuleRef::Ids(IdSet::parse(&ids)?), var, sel)
        }
        "ruleremovetargetbytag" => {
            let (tag, var, sel) = target(value)?;
            Ctl::RemoveTarget(RuleRef::Tag(tag), var, sel)
        }
        "ruleengine" => Ctl::Engine(match value.to_ascii_lowercase().as_str() {
            "on" => EngineMode::On,
            "off" => EngineMode::Off,
            "detectiononly" => EngineMode::DetectionOnly,
            _ => return Err(format!("ctl:ruleEngine={value}")),
        }),
        "requestbodyprocessor" => Ctl::BodyProcessor(match value.to_ascii_uppercase().as_str() {
            "URLENCODED" => BodyProcessor::UrlEncoded,
            "MULTIPART" => BodyProcessor::Multipart,
            "JSON" => BodyProcessor::Json,
            "XML" => BodyProcessor::Xml,
            _ => return Err(format!("ctl:requestBodyProcessor={value} is not supported")),
        }),
        "forcerequestbodyvariable" => Ctl::ForceBodyVariable(value.eq_ignore_ascii_case("on")),
        "auditengine" | "auditlogparts" | "requestbodyaccess" | "requestbodylimit"
        | "debugloglevel" | "responsebodyaccess" | "responsebodylimit" => return Ok(None),
        other => return Err(format!("unsupported ctl:{other}")),
    };
    Ok(Some(ctl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_flow_and_transforms() {
        let a = Actions::parse(
            "id:942100,phase:2,block,capture,t:none,t:urlDecodeUni,t:lowercase,msg:'SQLi',\
             logdata:'Matched %{MATCHED_VAR}',tag:'attack-sqli',tag:x,severity:'CRITICAL',\
             ver:'OWASP_CRS/3.3.4',nolog,skipAfter:END,multiMatch,chain,status:406",
        )
        .unwrap();
        assert_eq!(a.id, Some(942100));
        assert_eq!(a.phase, Some(2));
        assert_eq!(a.disruptive, Some(Disruptive::Block));
        assert!(a.capture && a.multi_match && a.chain && a.transform_reset);
        assert_eq!(
            a.transforms,
            vec![Transform::UrlDecodeUni, Transform::Lowercase]
        );
        assert_eq!(a.tags, vec!["attack-sqli", "x"]);
        assert_eq!(a.severity.as_deref(), Some("CRITICAL"));
        assert_eq!(a.log, Some(false));
        assert_eq!(a.skip_after.as_deref(), Some("END"));
        assert_eq!(a.status, Some(406));
        assert_eq!(Actions::parse("phase:request").unwrap().phase, Some(2));
        assert_eq!(Actions::parse("phase:response").unwrap().phase, Some(4));
        assert!(Actions::parse("phase:7").is_err());
    }

    #[test]
    fn t_none_drops_earlier_transforms() {
        let a = Actions::parse("t:lowercase,t:none,t:trim").unwrap();
        assert_eq!(a.transforms, vec![Transform::Trim]);
    }

    #[test]
    fn setvar_forms() {
        let a = Actions::parse(
            "setvar:'tx.a=+%{tx.critical_anomaly_score}',setvar:tx.b=-2,setvar:!tx.c,\
             setvar:TX.d,setvar:'tx.%{rule.id}-x=%{matched_var}'",
        )
        .unwrap();
        let ops: Vec<SetOp> = a
            .effects
            .iter()
            .map(|e| match e {
                Effect::SetVar(s) => s.op,
                Effect::Ctl(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            ops,
            [
                SetOp::Add,
                SetOp::Sub,
                SetOp::Delete,
                SetOp::Set,
                SetOp::Set
            ]
        );
        let a = Actions::parse("setvar:ip.x=1,setvar:'global.y=%{ip.z}'").unwrap();
        assert!(a.effects.is_empty());
        assert_eq!(a.persistent_setvars, 2);
        assert!(Actions::parse("setvar:foo.x=1").is_err());
        assert!(Actions::parse("setvar:'tx.x=%{nope.y}'").is_err());
    }

    #[test]
    fn ctls() {
        let a = Actions::parse(
            "ctl:ruleRemoveById=942100-942199,ctl:ruleRemoveTargetById=942100;ARGS:json,\
             ctl:ruleRemoveTargetByTag=attack-sqli;REQUEST_COOKIES:/^sess/,\
             ctl:ruleEngine=DetectionOnly,ctl:auditLogParts=+E,ctl:requestBodyProcessor=JSON",
        )
        .unwrap();
        assert_eq!(a.effects.len(), 5);
        match &a.effects[0] {
            Effect::Ctl(Ctl::RemoveRules(RuleRef::Ids(ids))) => {
                assert!(ids.contains(942150) && !ids.contains(942200));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &a.effects[1],
            Effect::Ctl(Ctl::RemoveTarget(RuleRef::Ids(_), Var::Args, Selector::Key(k))) if k == "json"
        ));
        assert!(matches!(
            &a.effects[3],
            Effect::Ctl(Ctl::Engine(EngineMode::DetectionOnly))
        ));
        assert!(Actions::parse("ctl:foo=1").is_err());
    }

    #[test]
    fn unsupported_actions_are_errors() {
        assert!(
            Actions::parse("id:1,exec:/bin/x")
                .unwrap_err()
                .contains("exec")
        );
        assert!(Actions::parse("t:bogus").unwrap_err().contains("t:bogus"));
    }
}
