//! Directives to a rule set: rules compiled once (targets, operators, pipelines, actions),
//! grouped by phase with `skipAfter` jumps resolved, defaults applied, and a report of
//! everything that was not loaded.
use std::collections::HashMap;
use std::path::Path;

use crate::action::{Actions, Disruptive, Effect, IdSet};
use crate::macros::MacroText;
use crate::operator::{LoadContext, Operator};
use crate::pipeline::{PipelineId, Pipelines};
use crate::seclang::Directive;
use crate::transform::Transform;
use crate::variable::{Selector, Targets, Var, parse_exclusion};

/// One SecRule of a chain (or the only one).
pub struct Link {
    /// What it inspects (empty for `SecAction`).
    pub targets: Targets,
    /// How (`None` for `SecAction`: always matches).
    pub operator: Option<Operator>,
    /// Its transformations.
    pub pipeline: PipelineId,
    /// `multiMatch`.
    pub multi_match: bool,
    /// `capture`.
    pub capture: bool,
    /// `setvar`s and `ctl`s, run as soon as this link matches.
    pub effects: Vec<Effect>,
}

/// A rule (a chain starter with its chained rules).
pub struct Rule {
    /// `id` (0 when the rule has none).
    pub id: u32,
    /// `file:line`.
    pub location: String,
    /// The starter first.
    pub links: Vec<Link>,
    /// What a match does to the request (`block` resolved through `SecDefaultAction`).
    pub disruptive: Disruptive,
    /// Status for `deny` (403 unless `status` says otherwise).
    pub status: u16,
    /// `msg`.
    pub msg: Option<MacroText>,
    /// `tag`s.
    pub tags: Vec<String>,
    /// Whether a match is logged (`nolog` turns it off).
    pub log: bool,
    /// `skipAfter`: index of the next rule to run in this phase's list.
    pub skip_after: Option<usize>,
    /// `skip`: rules to skip after a match.
    pub skip: u32,
}

impl Rule {
    /// Whether the rule carries this tag (case-insensitively).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}

/// What loading left out, for the init log.
#[derive(Debug, Default)]
pub struct Report {
    /// Rules loaded for phases 1 and 2.
    pub loaded: usize,
    /// Rules not loaded, with why: `rule 942100 (file:line): unsupported operator @x`.
    pub skipped: Vec<String>,
    /// Rules of the response phases (3-5), which this engine does not run.
    pub response_phase: usize,
    /// Directives not understood or ignored, and other remarks.
    pub notes: Vec<String>,
}

/// A loaded rule set.
#[derive(Default)]
pub struct RuleSet {
    /// Phase 1 and phase 2 rules, in file order.
    pub phases: [Vec<Rule>; 2],
    /// The transformation pipelines the rules use.
    pub pipelines: Pipelines,
    /// What was not loaded.
    pub report: Report,
}

/// One rule file's text.
pub struct Source<'a> {
    /// Its name for messages.
    pub name: &'a str,
    /// Its directory (for `@pmFromFile` and the like).
    pub dir: &'a Path,
    /// The directives.
    pub directives: Vec<Directive>,
}

#[derive(Clone, Default)]
struct Defaults {
    disruptive: Option<Disruptive>,
    transforms: Vec<Transform>,
}

/// Directives that configure ModSecurity itself (body access, limits, logging, storage):
/// accepted and ignored, since the host and the plugin config decide those.
const IGNORED_DIRECTIVES: &[&str] = &[
    "seccomponentsignature",
    "secrequestbodyaccess",
    "secresponsebodyaccess",
    "seccollectiontimeout",
    "secrequestbodylimit",
    "secrequestbodynofileslimit",
    "secrequestbodyinmemorylimit",
    "secrequestbodylimitaction",
    "secrequestbodyjsondepthlimit",
    "secresponsebodylimit",
    "secresponsebodylimitaction",
    "secresponsebodymimetype",
    "secargumentslimit",
    "secargumentseparator",
    "seccookieformat",
    "secunicodemapfile",
    "secpcrematchlimit",
    "secpcrematchlimitrecursion",
    "secauditengine",
    "secauditlog",
    "secauditlog2",
    "secauditlogparts",
    "secauditlogtype",
    "secauditlogformat",
    "secauditlogrelevantstatus",
    "secauditlogstoragedir",
    "secauditlogdirmode",
    "secauditlogfilemode",
    "secdebuglog",
    "secdebugloglevel",
    "sectmpdir",
    "secdatadir",
    "secuploaddir",
    "secuploadkeepfiles",
    "secuploadfilemode",
    "secuploadfilelimit",
    "sectmpsaveuploadedfiles",
    "secstatusengine",
    "secserversignature",
    "secgeolookupdb",
    "sechttpblkey",
    "secxmlexternalentity",
];

/// A removal or update of loaded rules by a `SecRuleRemove...`/`SecRuleUpdateTargetById`
/// directive (applied once every rule is loaded).
enum Removal {
    Rules(RuleMatch),
    Target(RuleMatch, Var, Selector),
    UpdateTargets(IdSet, Targets),
}

#[derive(Clone)]
enum RuleMatch {
    Ids(IdSet),
    Tag(String),
    Msg(String),
}

impl RuleMatch {
    fn matches(&self, rule: &Rule) -> bool {
        match self {
            RuleMatch::Ids(ids) => ids.contains(rule.id),
            RuleMatch::Tag(tag) => rule.has_tag(tag),
            RuleMatch::Msg(msg) => rule
                .msg
                .as_ref()
                .is_some_and(|m| m.expand(&crate::macros::NoValues) == msg.as_str()),
        }
    }
}

/// Builder state while directives are read in order.
#[derive(Default)]
struct Builder {
    set: RuleSet,
    /// `SecDefaultAction` per phase (1-5).
    defaults: [Defaults; 5],
    /// Phase 1-2 rules in file order, with their phase and `skipAfter` marker.
    rules: Vec<(Rule, u8, Option<String>)>,
    /// Marker name -> number of rules defined before it.
    markers: HashMap<String, usize>,
    removals: Vec<Removal>,
    /// `setvar`s on persistent collections seen (ignored).
    persistent_setvars: usize,
}

impl RuleSet {
    /// Compiles the sources in order. Rules that use something unsupported are left out
    /// and listed in [`RuleSet::report`]; nothing here fails as a whole.
    pub fn build(sources: &[Source<'_>]) -> RuleSet {
        let mut b = Builder::default();
        for source in sources {
            let mut chain: Vec<&Directive> = Vec::new();
            for d in &source.directives {
                let name = d.name.to_ascii_lowercase();
                let is_rule = name == "secrule" || name == "secaction";
                if !is_rule {
                    if let Some(first) = chain.first() {
                        b.skip(first, None, "chain cut short by another directive".into());
                        chain.clear();
                    }
                    b.directive(d, &name);
                    continue;
                }
                chain.push(d);
                if !has_chain_action(d) {
                    b.rule(&chain, source.dir);
                    chain.clear();
                }
            }
            if let Some(first) = chain.first() {
                b.skip(first, None, "chain without its last rule".into());
            }
        }
        b.finish()
    }
}

/// Whether a SecRule/SecAction's actions include `chain`.
fn has_chain_action(d: &Directive) -> bool {
    let actions = match d.name.eq_ignore_ascii_case("secaction") {
        true => d.args.first(),
        false => d.args.get(2),
    };
    actions.is_some_and(|a| {
        crate::seclang::split_actions(a)
            .map(|list| list.iter().any(|(n, _)| n.eq_ignore_ascii_case("chain")))
            .unwrap_or(false)
    })
}

fn actions_text(d: &Directive) -> &str {
    let i = if d.name.eq_ignore_ascii_case("secaction") {
        0
    } else {
        2
    };
    d.args.get(i).map(String::as_str).unwrap_or("")
}

impl Builder {
    fn note(&mut self, d: &Directive, text: impl std::fmt::Display) {
        self.set
            .report
            .notes
            .push(format!("{}: {text}", d.location()));
    }

    fn skip(&mut self, d: &Directive, id: Option<u32>, why: String) {
        let id = id
            .or_else(|| {
                let actions = crate::seclang::split_actions(actions_text(d)).ok()?;
                let (_, v) = actions.iter().find(|(n, _)| n.eq_ignore_ascii_case("id"))?;
                v.as_deref()?.parse().ok()
            })
            .map_or_else(|| "without id".to_string(), |id| id.to_string());
        self.set
            .report
            .skipped
            .push(format!("rule {id} ({}): {why}", d.location()));
    }

    fn directive(&mut self, d: &Directive, name: &str) {
        let arg = |i: usize| d.args.get(i).map(String::as_str);
        match name {
            "secmarker" => match arg(0) {
                Some(m) => {
                    self.markers.insert(m.to_string(), self.rules.len());
                }
                None => self.note(d, "SecMarker needs a name"),
            },
            "secdefaultaction" => self.default_action(d),
            "secruleengine" => self.note(
                d,
                "SecRuleEngine is ignored: the plugin's `mode` decides whether to block",
            ),
            "secruleremovebyid" => match IdSet::parse(&d.args.join(" ")) {
                Ok(ids) => self.removals.push(Removal::Rules(RuleMatch::Ids(ids))),
                Err(e) => self.note(d, e),
            },
            "secruleremovebytag" | "secruleremovebymsg" => {
                for v in &d.args {
                    let m = match name {
                        "secruleremovebytag" => RuleMatch::Tag(v.clone()),
                        _ => RuleMatch::Msg(v.clone()),
                    };
                    self.removals.push(Removal::Rules(m));
                }
            }
            "secruleremovetargetbyid" | "secruleremovetargetbytag" => {
                let (Some(which), Some(targets)) = (arg(0), arg(1)) else {
                    return self.note(d, format!("{} needs a rule and targets", d.name));
                };
                let rules = if name.ends_with("byid") {
                    match IdSet::parse(which) {
                        Ok(ids) => RuleMatch::Ids(ids),
                        Err(e) => return self.note(d, e),
                    }
                } else {
                    RuleMatch::Tag(which.to_string())
                };
                for target in targets.split('|') {
                    match parse_exclusion(target) {
                        Ok((var, sel)) => {
                            self.removals.push(Removal::Target(rules.clone(), var, sel))
                        }
                        Err(e) => self.note(d, e),
                    }
                }
            }
            "secruleupdatetargetbyid" => {
                let (Some(which), Some(targets)) = (arg(0), arg(1)) else {
                    return self.note(d, "SecRuleUpdateTargetById needs a rule and targets");
                };
                match (IdSet::parse(which), parse_update_targets(targets)) {
                    (Ok(ids), Ok(t)) => self.removals.push(Removal::UpdateTargets(ids, t)),
                    (Err(e), _) | (_, Err(e)) => self.note(d, e),
                }
            }
            "include" | "includeoptional" => self.note(
                d,
                "Include inside rule files is not followed: list the files in the plugin's `include`",
            ),
            _ if IGNORED_DIRECTIVES.contains(&name) => {}
            _ => self.note(d, format!("unknown directive {} ignored", d.name)),
        }
    }

    fn default_action(&mut self, d: &Directive) {
        let actions = match Actions::parse(d.args.first().map(String::as_str).unwrap_or("")) {
            Ok(a) => a,
            Err(e) => return self.note(d, format!("SecDefaultAction: {e}")),
        };
        let Some(phase) = actions.phase else {
            return self.note(d, "SecDefaultAction without a phase");
        };
        self.defaults[phase as usize - 1] = Defaults {
            disruptive: actions.disruptive,
            transforms: actions.transforms,
        };
    }

    /// Compiles a rule and its chained rules; skips (and reports) the whole chain on error.
    fn rule(&mut self, chain: &[&Directive], dir: &Path) {
        let starter = chain[0];
        let actions = match Actions::parse(actions_text(starter)) {
            Ok(a) => a,
            Err(e) => return self.skip(starter, None, e),
        };
        let phase = actions.phase.unwrap_or(2);
        if phase > 2 {
            self.set.report.response_phase += 1;
            return;
        }
        let id = actions.id.unwrap_or(0);
        let mut links = Vec::with_capacity(chain.len());
        for (i, d) in chain.iter().enumerate() {
            let link_actions;
            let a = if i == 0 {
                &actions
            } else {
                link_actions = match Actions::parse(actions_text(d)) {
                    Ok(a) => a,
                    Err(e) => return self.skip(d, Some(id), format!("chained rule: {e}")),
                };
                &link_actions
            };
            self.persistent_setvars += a.persistent_setvars;
            match self.link(d, a, phase, dir) {
                Ok(link) => links.push(link),
                Err(e) => return self.skip(d, Some(id), e),
            }
        }
        let default = self.defaults[phase as usize - 1].disruptive;
        let disruptive = match actions.disruptive.or(default) {
            Some(Disruptive::Block) => match default {
                Some(Disruptive::Block) | None => Disruptive::Pass,
                Some(d) => d,
            },
            Some(d) => d,
            None => Disruptive::Pass,
        };
        let rule = Rule {
            id,
            location: starter.location(),
            links,
            disruptive,
            status: actions.status.unwrap_or(403),
            msg: actions.msg,
            tags: actions.tags,
            log: actions.log.unwrap_or(true),
            skip_after: None,
            skip: actions.skip,
        };
        self.rules.push((rule, phase, actions.skip_after));
    }

    fn link(&mut self, d: &Directive, a: &Actions, phase: u8, dir: &Path) -> Result<Link, String> {
        let (targets, operator) = if d.name.eq_ignore_ascii_case("secaction") {
            (Targets::default(), None)
        } else {
            let (Some(vars), Some(op)) = (d.args.first(), d.args.get(1)) else {
                return Err("SecRule needs VARIABLES and OPERATOR".into());
            };
            let targets = Targets::parse(vars)?;
            let operator = Operator::parse(op, &LoadContext { rule_dir: dir })?;
            (targets, Some(operator))
        };
        let mut transforms = Vec::new();
        if !a.transform_reset {
            transforms.extend_from_slice(&self.defaults[phase as usize - 1].transforms);
        }
        transforms.extend_from_slice(&a.transforms);
        Ok(Link {
            targets,
            operator,
            pipeline: self.set.pipelines.intern(&transforms),
            multi_match: a.multi_match,
            capture: a.capture,
            effects: a.effects.clone(),
        })
    }

    /// Applies removals and updates, resolves `skipAfter` and splits the rules by phase.
    fn finish(mut self) -> RuleSet {
        let removals = std::mem::take(&mut self.removals);
        let mut positions: [Vec<usize>; 2] = Default::default();
        for (pos, (mut rule, phase, skip_after)) in
            std::mem::take(&mut self.rules).into_iter().enumerate()
        {
            let mut removed = false;
            for r in &removals {
                match r {
                    Removal::Rules(m) => removed |= m.matches(&rule),
                    Removal::Target(m, var, sel) if m.matches(&rule) => {
                        for link in &mut rule.links {
                            link.targets.exclude.push((*var, sel.clone()));
                        }
                    }
                    Removal::UpdateTargets(ids, t) if ids.contains(rule.id) => {
                        let link = &mut rule.links[0];
                        link.targets.include.extend(t.include.iter().cloned());
                        link.targets.exclude.extend(t.exclude.iter().cloned());
                    }
                    _ => {}
                }
            }
            if removed {
                continue;
            }
            let p = phase as usize - 1;
            if let Some(marker) = skip_after {
                match self.markers.get(&marker) {
                    // Resolved below, once the phase's list is complete: stash the marker's
                    // position for now.
                    Some(&at) => rule.skip_after = Some(at),
                    None => {
                        self.set.report.notes.push(format!(
                            "rule {} ({}): skipAfter:{marker}: no such SecMarker; skips to the end of the phase",
                            rule.id, rule.location
                        ));
                        rule.skip_after = Some(usize::MAX);
                    }
                }
            }
            positions[p].push(pos);
            self.set.phases[p].push(rule);
        }
        for (p, rules) in self.set.phases.iter_mut().enumerate() {
            for (i, rule) in rules.iter_mut().enumerate() {
                if let Some(at) = rule.skip_after {
                    // Never backwards: a marker before the rule skips nothing.
                    let next = positions[p].partition_point(|&pos| pos < at);
                    rule.skip_after = Some(next.max(i + 1));
                }
            }
        }
        if self.persistent_setvars > 0 {
            self.set.report.notes.push(format!(
                "{} setvar actions on persistent collections (ip, global, session, user, resource) ignored: no state outlives a request",
                self.persistent_setvars
            ));
        }
        self.set.report.loaded = self.set.phases[0].len() + self.set.phases[1].len();
        self.set
    }
}

/// `SecRuleUpdateTargetById` targets: additions and `!` exclusions.
fn parse_update_targets(text: &str) -> Result<Targets, String> {
    let mut t = Targets::default();
    for part in text.split('|') {
        match part.trim().strip_prefix('!') {
            Some(excl) => t.exclude.push(parse_exclusion(excl)?),
            None => t.include.extend(Targets::parse(part)?.include),
        }
    }
    Ok(t)
}
