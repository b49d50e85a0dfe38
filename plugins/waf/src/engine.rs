//! Rule evaluation for request phases 1 and 2: targets, transformations (cached per request),
//! operators, chains, actions, flow (`skipAfter`, `skip`), runtime controls and anomaly
//! scoring, ending in a [`Verdict`].
//!
//! Semantics, where ModSecurity versions differ or this engine simplifies:
//! - Every target of a rule is inspected; the rule's `setvar`s and `ctl`s run once when it
//!   matches (not once per matching value). In a chain each link's `setvar`s and `ctl`s run
//!   as soon as that link matches (as ModSecurity does: the next links see them, and they
//!   stay even if a later link fails); `capture` likewise fills TX.0-TX.9 for the next links.
//!   A link that matched several values runs each `setvar` once per distinct expansion (one
//!   `tx.header_name_%{tx.0}` per header name, but a score increment once).
//!   The disruptive action, `msg` and the hit need every link to match.
//! - `MATCHED_VARS` holds the values the last matching link matched.
//! - `deny` ends the request at once (in detect mode it is noted and evaluation goes on);
//!   `allow` ends evaluation and lets the request through; `block` is resolved at load.
//! - After both phases the plugin also compares the inbound anomaly score (the highest of
//!   `tx.anomaly_score`, `tx.inbound_anomaly_score`, `tx.blocking_inbound_anomaly_score` and
//!   the per-level sums up to the blocking paranoia level) with the threshold, so rule sets
//!   without a blocking rule still block.
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::action::{BodyProcessor, Ctl, Disruptive, Effect, EngineMode, IdSet, RuleRef, SetOp};
use crate::macros::{Lookup, MacroRef, MacroText};
use crate::operator::Expand;
use crate::pipeline::{PipelineId, Source, TransformCache};
use crate::request::{RequestData, Transaction};
use crate::ruleset::{Link, Rule, RuleSet};
use crate::variable::{Selector, Target, Var};

/// Whether the engine blocks or only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Block requests that reach the threshold or hit a `deny` rule (403).
    Block,
    /// Log what would be blocked and let every request through.
    Detect,
}

/// Rules and targets removed for requests whose path starts with a prefix.
#[derive(Debug, Clone)]
pub struct Exclusion {
    /// The path prefix it applies to (`/` for all).
    pub path_prefix: String,
    /// Rules that do not run.
    pub remove_rules: Vec<IdSet>,
    /// Targets these rules skip.
    pub remove_targets: Vec<(IdSet, Var, Selector)>,
}

/// How the engine runs a rule set.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Block or detect.
    pub mode: Mode,
    /// The inbound anomaly threshold; `None`: the rules' `tx.inbound_anomaly_score_threshold`,
    /// else 5.
    pub inbound_threshold: Option<i64>,
    /// The paranoia level; `None`: whatever the rules set.
    pub paranoia_level: Option<u8>,
    /// Per-path exclusions.
    pub exclusions: Vec<Exclusion>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: Mode::Block,
            inbound_threshold: None,
            paranoia_level: None,
            exclusions: Vec::new(),
        }
    }
}

/// A rule that matched and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Its id.
    pub id: u32,
    /// Its expanded `msg`, if it has one.
    pub msg: Option<String>,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `Some(status)`: answer with it instead of forwarding.
    pub block: Option<u16>,
    /// Detection mode: the request would have been blocked.
    pub would_block: bool,
    /// The rule whose `deny` decided (or would have), if one did.
    pub deny_rule: Option<u32>,
    /// The inbound anomaly score.
    pub score: i64,
    /// The threshold it was compared with.
    pub threshold: i64,
    /// Rules that matched and log, in order.
    pub hits: Vec<Hit>,
}

/// A loaded rule set with its settings; evaluates requests.
pub struct Engine {
    rules: RuleSet,
    settings: Settings,
    /// TX variables the settings fix (setvar cannot change them).
    pinned: Vec<(String, Vec<u8>)>,
}

impl Engine {
    /// An engine for these rules.
    pub fn new(rules: RuleSet, settings: Settings) -> Engine {
        let mut pinned = Vec::new();
        if let Some(pl) = settings.paranoia_level {
            for name in [
                "paranoia_level",
                "executing_paranoia_level",
                "blocking_paranoia_level",
                "detection_paranoia_level",
            ] {
                pinned.push((name.to_string(), pl.to_string().into_bytes()));
            }
        }
        if let Some(t) = settings.inbound_threshold {
            pinned.push((
                "inbound_anomaly_score_threshold".to_string(),
                t.to_string().into_bytes(),
            ));
        }
        Engine {
            rules,
            settings,
            pinned,
        }
    }

    /// The loaded rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Runs phases 1 and 2 over a request.
    pub fn evaluate(&self, tx: Transaction) -> Verdict {
        let mut st = State::new(RequestData::new(tx), self);
        let mut cache = TransformCache::with_capacity(256);
        let mut deny = None;
        let mut allowed = false;
        for phase in 0..2 {
            if phase == 1 {
                st.data
                    .process_body(st.body_processor, st.force_body_variable);
            }
            match self.run_phase(phase, &mut st, &mut cache) {
                Flow::Next => {}
                Flow::Deny(id, status) => {
                    deny = Some((id, status));
                    break;
                }
                Flow::Allow => {
                    allowed = true;
                    break;
                }
            }
        }
        let score = st.score();
        let threshold = self
            .settings
            .inbound_threshold
            .or_else(|| st.tx_int("inbound_anomaly_score_threshold"))
            .unwrap_or(5);
        let detect = st.mode != EngineMode::On;
        let over = !allowed && st.mode != EngineMode::Off && score >= threshold;
        let (block, would_block) = match (deny, detect) {
            (Some((_, status)), false) => (Some(status), false),
            (None, false) if over => (Some(403), false),
            _ => (
                None,
                st.would_deny.is_some() || (over && st.mode != EngineMode::Off),
            ),
        };
        Verdict {
            block,
            would_block,
            deny_rule: deny.map(|(id, _)| id).or(st.would_deny),
            score,
            threshold,
            hits: st.hits,
        }
    }

    fn run_phase<'e>(
        &'e self,
        phase: usize,
        st: &mut State<'e>,
        cache: &mut TransformCache,
    ) -> Flow {
        let rules = &self.rules.phases[phase];
        let mut i = 0;
        while i < rules.len() {
            let rule = &rules[i];
            i += 1;
            if st.rule_removed(rule) || !self.run_rule(rule, st, cache) {
                continue;
            }
            if let Some(next) = rule.skip_after {
                i = next;
            }
            i = i.saturating_add(rule.skip as usize);
            match rule.disruptive {
                Disruptive::Deny if st.mode == EngineMode::On => {
                    return Flow::Deny(rule.id, rule.status);
                }
                Disruptive::Deny => {
                    st.would_deny.get_or_insert(rule.id);
                }
                Disruptive::Allow => return Flow::Allow,
                Disruptive::Pass | Disruptive::Block => {}
            }
            if st.mode == EngineMode::Off {
                return Flow::Allow;
            }
        }
        Flow::Next
    }

    /// Evaluates a rule (all its chain); on a match runs its effects and returns true.
    fn run_rule<'e>(
        &'e self,
        rule: &'e Rule,
        st: &mut State<'e>,
        cache: &mut TransformCache,
    ) -> bool {
        st.rule = Some(rule);
        for link in &rule.links {
            let matches = self.evaluate_link(rule, link, st, cache);
            if matches.is_empty() {
                return false;
            }
            // As in ModSecurity, a link's own setvars and ctls run as soon as it matches,
            // so the next links see them (CRS: `setvar:'tx.extension=...',chain` then
            // `SecRule TX:EXTENSION ...`).
            if matches.len() > 1 && link.effects.iter().any(|e| matches!(e, Effect::SetVar(_))) {
                st.apply_per_match(&link.effects, &matches, link.capture);
                st.record(matches, link.capture);
            } else {
                st.record(matches, link.capture);
                for effect in &link.effects {
                    st.apply(effect);
                }
            }
        }
        if rule.log {
            let msg = rule.msg.as_ref().map(|m| m.expand(&*st).into_owned());
            st.hits.push(Hit { id: rule.id, msg });
        }
        true
    }

    fn evaluate_link(
        &self,
        rule: &Rule,
        link: &Link,
        st: &State,
        cache: &mut TransformCache,
    ) -> Vec<Match> {
        let Some(op) = &link.operator else {
            return vec![Match::default()];
        };
        let pipes = &self.rules.pipelines;
        let removed: Vec<&(Var, Selector)> = st.removed_targets(rule).collect();
        let excluded = |var: Var, name: &str| {
            let hit = |(v, sel): &(Var, Selector)| *v == var && sel.selects(name);
            link.targets.exclude.iter().any(hit) || removed.iter().any(|t| hit(t))
        };
        let all_stages: Vec<PipelineId>;
        let nodes: &[PipelineId] = if link.multi_match {
            all_stages = std::iter::once(0)
                .chain(pipes.path(link.pipeline))
                .collect();
            &all_stages
        } else {
            std::slice::from_ref(&link.pipeline)
        };
        let mut matches = Vec::new();
        for target in &link.targets.include {
            if target.count {
                let n = st.count(target, &excluded).to_string();
                if let Some(captures) = op.evaluate(n.as_bytes(), st) {
                    matches.push(Match {
                        name: format!("&{}", target.var.name()),
                        value: n.into_bytes(),
                        captures,
                    });
                }
                continue;
            }
            st.for_each(target, &mut |name, raw, source| {
                if excluded(target.var, name) {
                    return;
                }
                let mut last: Option<Vec<u8>> = None;
                for &node in nodes.iter() {
                    let value = cache.get(pipes, node, source, raw);
                    if last.as_deref() == Some(&*value) {
                        continue;
                    }
                    if let Some(captures) = op.evaluate(&value, st) {
                        matches.push(Match {
                            name: full_name(target.var, name),
                            value: value.into_owned(),
                            captures,
                        });
                        break;
                    }
                    if nodes.len() > 1 {
                        last = Some(value.into_owned());
                    }
                }
            });
        }
        matches
    }
}

/// How a phase ended.
enum Flow {
    Next,
    Deny(u32, u16),
    Allow,
}

/// One matched value.
#[derive(Default)]
struct Match {
    /// `ARGS:id`, `REQUEST_URI`, ...
    name: String,
    value: Vec<u8>,
    captures: Vec<Vec<u8>>,
}

fn full_name(var: Var, key: &str) -> String {
    if var.is_collection() {
        format!("{}:{key}", var.name())
    } else {
        var.name().to_string()
    }
}

/// Per-request state.
struct State<'e> {
    data: RequestData,
    tx: BTreeMap<String, Vec<u8>>,
    pinned: &'e [(String, Vec<u8>)],
    mode: EngineMode,
    matched_var: Option<(String, Vec<u8>)>,
    matched_vars: Vec<(String, Vec<u8>)>,
    removed_rules: Vec<RuleRef>,
    removed_targets: Vec<(RuleRef, (Var, Selector))>,
    body_processor: Option<BodyProcessor>,
    force_body_variable: bool,
    /// The rule being evaluated, for `%{rule.*}`.
    rule: Option<&'e Rule>,
    would_deny: Option<u32>,
    hits: Vec<Hit>,
}

fn applies(r: &RuleRef, rule: &Rule) -> bool {
    match r {
        RuleRef::Ids(ids) => ids.contains(rule.id),
        RuleRef::Tag(tag) => rule.has_tag(tag),
    }
}

impl<'e> State<'e> {
    fn new(data: RequestData, engine: &'e Engine) -> State<'e> {
        let mut st = State {
            tx: engine.pinned.iter().cloned().collect(),
            pinned: &engine.pinned,
            mode: match engine.settings.mode {
                Mode::Block => EngineMode::On,
                Mode::Detect => EngineMode::DetectionOnly,
            },
            matched_var: None,
            matched_vars: Vec::new(),
            removed_rules: Vec::new(),
            removed_targets: Vec::new(),
            body_processor: None,
            force_body_variable: false,
            rule: None,
            would_deny: None,
            hits: Vec::new(),
            data,
        };
        for ex in &engine.settings.exclusions {
            if !st.data.tx.path.starts_with(&ex.path_prefix) {
                continue;
            }
            for ids in &ex.remove_rules {
                st.removed_rules.push(RuleRef::Ids(ids.clone()));
            }
            for (ids, var, sel) in &ex.remove_targets {
                st.removed_targets
                    .push((RuleRef::Ids(ids.clone()), (*var, sel.clone())));
            }
        }
        st
    }

    fn rule_removed(&self, rule: &Rule) -> bool {
        self.removed_rules.iter().any(|r| applies(r, rule))
    }

    fn removed_targets<'a>(&'a self, rule: &'a Rule) -> impl Iterator<Item = &'a (Var, Selector)> {
        self.removed_targets
            .iter()
            .filter(move |(r, _)| applies(r, rule))
            .map(|(_, target)| target)
    }

    fn tx_int(&self, name: &str) -> Option<i64> {
        self.tx.get(name).map(|v| to_int(v))
    }

    /// The inbound anomaly score, whichever CRS version's variables the rules use.
    fn score(&self) -> i64 {
        // Per-level scores count up to the blocking paranoia level only: higher levels are
        // detection-only (CRS 4 `detection_paranoia_level`, CRS 3 `executing_paranoia_level`).
        let blocking_level = self
            .tx_int("blocking_paranoia_level")
            .or_else(|| self.tx_int("paranoia_level"))
            .unwrap_or(4)
            .clamp(1, 4);
        let sum = |prefix: &str| -> i64 {
            (1..=blocking_level)
                .filter_map(|pl| self.tx_int(&format!("{prefix}_pl{pl}")))
                .sum()
        };
        [
            self.tx_int("anomaly_score").unwrap_or(0),
            self.tx_int("inbound_anomaly_score").unwrap_or(0),
            self.tx_int("blocking_inbound_anomaly_score").unwrap_or(0),
            sum("anomaly_score"),
            sum("inbound_anomaly_score"),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Calls `f(name, value, source)` for each selected item of a target.
    fn for_each(&self, target: &Target, f: &mut dyn FnMut(&str, &[u8], Source)) {
        let sel = &target.selector;
        match target.var {
            Var::Tx => match sel {
                Selector::Key(k) => {
                    if let Some(v) = self.tx.get(k) {
                        f(k, v, Source::NONE);
                    }
                }
                _ => {
                    for (k, v) in &self.tx {
                        if sel.selects(k) {
                            f(k, v, Source::NONE);
                        }
                    }
                }
            },
            Var::MatchedVar => {
                if let Some((_, v)) = &self.matched_var {
                    f("", v, Source::NONE);
                }
            }
            Var::MatchedVarName => {
                if let Some((n, _)) = &self.matched_var {
                    f("", n.as_bytes(), Source::NONE);
                }
            }
            Var::MatchedVars => {
                for (n, v) in &self.matched_vars {
                    if sel.selects(n) {
                        f(n, v, Source::NONE);
                    }
                }
            }
            Var::MatchedVarsNames => {
                for (n, _) in &self.matched_vars {
                    if sel.selects(n) {
                        f(n, n.as_bytes(), Source::NONE);
                    }
                }
            }
            var => self.data.for_each(var, &mut |n, v, s| {
                if sel.selects(n) {
                    f(n, v, s)
                }
            }),
        }
    }

    fn count(&self, target: &Target, excluded: &dyn Fn(Var, &str) -> bool) -> usize {
        let mut n = 0;
        self.for_each(target, &mut |name, _, _| {
            if !excluded(target.var, name) {
                n += 1;
            }
        });
        n
    }

    /// A link matched: MATCHED_VAR(S), and TX.0-9 with `capture`.
    fn record(&mut self, matches: Vec<Match>, capture: bool) {
        if let Some(first) = matches.first().filter(|_| capture) {
            for i in 0..10 {
                let key = i.to_string();
                match first.captures.get(i) {
                    Some(c) => {
                        self.tx.insert(key, c.clone());
                    }
                    None => {
                        self.tx.remove(&key);
                    }
                }
            }
        }
        self.matched_vars = matches.into_iter().map(|m| (m.name, m.value)).collect();
        self.matched_var = self.matched_vars.last().cloned();
    }

    /// A link's effects when it matched several values: each `setvar` runs once per distinct
    /// expansion, with `MATCHED_VAR` (and, with `capture`, TX.0-TX.9) of each value in turn
    /// (CRS 920450 stores one `tx.header_name_*` per header name), so a `setvar` that does
    /// not depend on the value (an anomaly score increment) still runs once; `ctl`s run once.
    fn apply_per_match(&mut self, effects: &[Effect], matches: &[Match], capture: bool) {
        let mut done: Vec<(usize, String, String)> = Vec::new();
        for (i, m) in matches.iter().enumerate() {
            if capture {
                for (n, c) in m.captures.iter().enumerate().take(10) {
                    self.tx.insert(n.to_string(), c.clone());
                }
                for n in m.captures.len()..10 {
                    self.tx.remove(&n.to_string());
                }
            }
            self.matched_var = Some((m.name.clone(), m.value.clone()));
            for (k, effect) in effects.iter().enumerate() {
                match effect {
                    Effect::SetVar(sv) => {
                        let name = sv.name.expand(&*self).to_ascii_lowercase();
                        let value = sv.value.expand(&*self).into_owned();
                        if !done
                            .iter()
                            .any(|(j, n, v)| *j == k && *n == name && *v == value)
                        {
                            done.push((k, name.clone(), value.clone()));
                            self.set_var(sv.op, name, value);
                        }
                    }
                    Effect::Ctl(_) if i == 0 => self.apply(effect),
                    Effect::Ctl(_) => {}
                }
            }
        }
    }

    fn set_var(&mut self, op: SetOp, name: String, value: String) {
        if self.pinned.iter().any(|(p, _)| *p == name) {
            return;
        }
        match op {
            SetOp::Set => {
                self.tx.insert(name, value.into_bytes());
            }
            SetOp::Delete => {
                self.tx.remove(&name);
            }
            SetOp::Add | SetOp::Sub => {
                let old = self.tx.get(&name).map_or(0, |v| to_int(v));
                let delta = to_int(value.as_bytes());
                let new = match op {
                    SetOp::Add => old.saturating_add(delta),
                    _ => old.saturating_sub(delta),
                };
                self.tx.insert(name, new.to_string().into_bytes());
            }
        }
    }

    fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::SetVar(sv) => {
                let name = sv.name.expand(&*self).to_ascii_lowercase();
                let value = sv.value.expand(&*self).into_owned();
                self.set_var(sv.op, name, value);
            }
            Effect::Ctl(ctl) => match ctl {
                Ctl::RemoveRules(r) => self.removed_rules.push(r.clone()),
                Ctl::RemoveTarget(r, var, sel) => {
                    self.removed_targets.push((r.clone(), (*var, sel.clone())))
                }
                // Rules may relax the mode, never make a detection-only engine block.
                Ctl::Engine(mode) => match (self.mode, mode) {
                    (EngineMode::Off, _) | (EngineMode::DetectionOnly, EngineMode::On) => {}
                    (_, m) => self.mode = *m,
                },
                Ctl::BodyProcessor(p) => self.body_processor = Some(*p),
                Ctl::ForceBodyVariable(on) => self.force_body_variable = *on,
            },
        }
    }
}

/// ModSecurity's integer reading of a value: leading integer, else 0.
fn to_int(v: &[u8]) -> i64 {
    let s = std::str::from_utf8(v).unwrap_or("").trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse().unwrap_or(0)
}

impl Lookup for State<'_> {
    fn lookup(&self, r: &MacroRef) -> Option<Cow<'_, [u8]>> {
        let key = r.key.as_deref();
        let var = match (r.collection.as_str(), key) {
            ("tx", Some(k)) => return self.tx.get(k).map(|v| Cow::Borrowed(v.as_slice())),
            ("rule", Some("id")) => {
                return self.rule.map(|r| Cow::Owned(r.id.to_string().into_bytes()));
            }
            ("rule", Some("msg")) => {
                let msg = self.rule?.msg.as_ref()?;
                return Some(Cow::Owned(msg.expand(self).into_owned().into_bytes()));
            }
            ("rule", _) => return None,
            ("matched_var", _) => {
                return self
                    .matched_var
                    .as_ref()
                    .map(|(_, v)| Cow::Borrowed(&v[..]));
            }
            ("matched_var_name", _) => {
                return self
                    .matched_var
                    .as_ref()
                    .map(|(n, _)| Cow::Borrowed(n.as_bytes()));
            }
            (name, _) => Var::from_name(name).ok()?,
        };
        match key {
            Some(k) => self.data.first(var, k).map(Cow::Borrowed),
            None => match var {
                Var::MatchedVars => self.matched_vars.last().map(|(_, v)| Cow::Borrowed(&v[..])),
                Var::MatchedVarsNames => self
                    .matched_vars
                    .last()
                    .map(|(n, _)| Cow::Borrowed(n.as_bytes())),
                _ => self.data.scalar(var),
            },
        }
    }
}

impl Expand for State<'_> {
    fn expand<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !text.contains("%{") {
            return Cow::Borrowed(text);
        }
        match MacroText::parse(text) {
            Ok(m) => Cow::Owned(m.expand(self).into_owned()),
            Err(_) => Cow::Borrowed(text),
        }
    }
}
