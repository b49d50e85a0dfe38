//! The plugin's config: rule files (`include` globs read with `std::fs`) and inline `rules`,
//! paranoia level, threshold, mode and per-path exclusions; turned into an [`Engine`].
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::action::IdSet;
use crate::engine::{Engine, Exclusion, Mode, Settings};
use crate::ruleset::{RuleSet, Source};
use crate::seclang;
use crate::variable::parse_exclusion;

/// `[plugin.NAME.config]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WafConfig {
    /// Rule files or globs (`*`/`?` in the file name), loaded in order; each glob's
    /// matches sorted by name, as ModSecurity's `Include` does.
    #[serde(default)]
    pub include: Vec<String>,
    /// Rules written inline, loaded after the included files.
    #[serde(default)]
    pub rules: Option<String>,
    /// The paranoia level (1-4); fixes `tx.paranoia_level` and friends.
    #[serde(default)]
    pub paranoia_level: Option<u8>,
    /// The inbound anomaly score that blocks; fixes `tx.inbound_anomaly_score_threshold`.
    #[serde(default)]
    pub inbound_threshold: Option<i64>,
    /// `block` (default) or `detect`.
    #[serde(default)]
    pub mode: ModeName,
    /// Rules and targets removed for some paths.
    #[serde(default)]
    pub exclusions: Vec<ExclusionConfig>,
}

/// `mode`.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// Block.
    #[default]
    Block,
    /// Log only.
    Detect,
}

/// One entry of `exclusions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionConfig {
    /// Requests whose path starts with this (default: all).
    #[serde(default = "root")]
    pub path_prefix: String,
    /// Rule ids (`942100`) or ranges (`"942100-942199"`) that do not run.
    #[serde(default)]
    pub remove_rules: Vec<RuleIds>,
    /// Targets rules skip: `{ id = 942100, target = "ARGS:json" }`.
    #[serde(default)]
    pub remove_targets: Vec<TargetRemoval>,
}

/// One `remove_targets` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRemoval {
    /// The rule(s).
    pub id: RuleIds,
    /// The target, as in `ctl:ruleRemoveTargetById` (`ARGS:json`, `REQUEST_COOKIES:/^sess/`).
    pub target: String,
}

/// A rule id or a range written as a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RuleIds {
    /// `942100`
    One(u32),
    /// `"942100-942199"`
    Text(String),
}

impl RuleIds {
    fn to_set(&self) -> Result<IdSet, String> {
        match self {
            RuleIds::One(id) => Ok(IdSet(vec![(*id, *id)])),
            RuleIds::Text(t) => IdSet::parse(t),
        }
    }
}

fn root() -> String {
    "/".to_string()
}

/// A rule file read from disk (or the inline rules).
struct File {
    name: String,
    dir: PathBuf,
    text: String,
}

impl WafConfig {
    /// Reads the rule files, compiles the rules and checks the settings. Unreadable files,
    /// globs matching nothing, syntax errors and bad settings are errors; unsupported rules
    /// are not (see [`RuleSet::report`]).
    pub fn build(&self) -> Result<Engine, String> {
        if let Some(pl) = self.paranoia_level.filter(|pl| !(1..=4).contains(pl)) {
            return Err(format!("paranoia_level must be 1-4, got {pl}"));
        }
        if self.inbound_threshold.is_some_and(|t| t < 1) {
            return Err("inbound_threshold must be at least 1".into());
        }
        let mut files = Vec::new();
        for pattern in &self.include {
            for path in expand_glob(pattern)? {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("include {}: {e}", path.display()))?;
                files.push(File {
                    name: path.display().to_string(),
                    dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    text,
                });
            }
        }
        if let Some(rules) = &self.rules {
            files.push(File {
                name: "<inline rules>".into(),
                dir: PathBuf::from("."),
                text: rules.clone(),
            });
        }
        if files.is_empty() {
            return Err("no rules: set `include` and/or `rules`".into());
        }
        let mut sources = Vec::with_capacity(files.len());
        for f in &files {
            sources.push(Source {
                name: &f.name,
                dir: &f.dir,
                directives: seclang::parse(&f.text, &f.name)?,
            });
        }
        let rules = RuleSet::build(&sources);
        let mut exclusions = Vec::new();
        for (i, e) in self.exclusions.iter().enumerate() {
            let ctx = |err: String| format!("exclusions[{i}]: {err}");
            let remove_rules = e
                .remove_rules
                .iter()
                .map(RuleIds::to_set)
                .collect::<Result<_, _>>()
                .map_err(ctx)?;
            let mut remove_targets = Vec::new();
            for t in &e.remove_targets {
                let (var, sel) = parse_exclusion(&t.target).map_err(ctx)?;
                remove_targets.push((t.id.to_set().map_err(ctx)?, var, sel));
            }
            exclusions.push(Exclusion {
                path_prefix: e.path_prefix.clone(),
                remove_rules,
                remove_targets,
            });
        }
        let settings = Settings {
            mode: match self.mode {
                ModeName::Block => Mode::Block,
                ModeName::Detect => Mode::Detect,
            },
            inbound_threshold: self.inbound_threshold,
            paranoia_level: self.paranoia_level,
            exclusions,
        };
        Ok(Engine::new(rules, settings))
    }
}

/// The files a pattern names: itself without wildcards, else the matching entries of its
/// directory (wildcards `*` and `?` only in the last component), sorted.
fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("include {pattern}: not a file path"))?;
    if !name.contains(['*', '?']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(dir).map_err(|e| format!("include {pattern}: {e}"))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    if found.is_empty() {
        return Err(format!("include {pattern}: no file matches"));
    }
    found.sort();
    Ok(found)
}

/// `*` (any run) and `?` (one byte) matching.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> WafConfig {
        serde_json::from_str(json).unwrap()
    }

    fn err(cfg: WafConfig) -> String {
        match cfg.build() {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"REQUEST-*.conf", b"REQUEST-942-SQLI.conf"));
        assert!(!wildcard(b"REQUEST-*.conf", b"RESPONSE-950.conf"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"a?c", b"ac"));
    }

    #[test]
    fn globs_read_sorted_files() {
        let dir = std::env::temp_dir().join(format!("waf-glob-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.conf"), "SecAction \"id:2,phase:1,pass\"\n").unwrap();
        std::fs::write(dir.join("a.conf"), "SecAction \"id:1,phase:1,pass\"\n").unwrap();
        std::fs::write(dir.join("a.data"), "x\n").unwrap();
        let found = expand_glob(&format!("{}/*.conf", dir.display())).unwrap();
        assert_eq!(found, vec![dir.join("a.conf"), dir.join("b.conf")]);
        let cfg = parse(&format!(r#"{{"include": ["{}/*.conf"]}}"#, dir.display()));
        let engine = cfg.build().unwrap();
        let ids: Vec<u32> = engine.rules().phases[0].iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert!(expand_glob(&format!("{}/*.nope", dir.display())).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_are_checked() {
        assert!(
            parse(r#"{"rules": "SecAction \"id:1\"", "paranoia_level": 5}"#)
                .build()
                .is_err()
        );
        assert!(
            parse(r#"{"rules": "SecAction \"id:1\"", "inbound_threshold": 0}"#)
                .build()
                .is_err()
        );
        assert!(err(parse("{}")).contains("no rules"));
        let e = err(parse(r#"{"include": ["/nonexistent/x.conf"]}"#));
        assert!(e.contains("/nonexistent/x.conf"), "{e}");
        let e = err(parse(r#"{"rules": "SecAction \"id:1", "mode": "detect"}"#));
        assert!(e.contains("<inline rules>:1"), "{e}");
        assert!(serde_json::from_str::<WafConfig>(r#"{"mode": "warn"}"#).is_err());
        let e = err(parse(
            r#"{"rules": "SecAction \"id:1\"", "exclusions": [{"remove_targets": [{"id": 1, "target": "NOPE:x"}]}]}"#,
        ));
        assert!(e.starts_with("exclusions[0]:"), "{e}");
    }
}
