//! The `[sync]` settings: the remote, the round interval, this node's id
//! and the rules that say which namespaces sync and how.
//!
//! Invariants:
//! - A rule's `match` is a namespace name, a prefix ending in `*`, or `*`;
//!   the first rule that matches a namespace decides (so a specific rule
//!   goes before a wildcard one). No rules at all means `"*"` in `push` mode.
//! - Validation happens at start-up (exit status 2 with the offending key),
//!   never later: the sync loop trusts what it is given.

use std::time::Duration;

use serde::Deserialize;

use crate::store::S3Options;

/// What a node does with a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Written here; uploaded to the remote.
    Push,
    /// A read replica of a namespace written elsewhere (local writes: 409).
    Pull,
    /// Written here and elsewhere.
    Both,
}

/// How a namespace that changed on both sides is reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Re-apply this node's unsynced writes on the remote's newest generation.
    Rebase,
    /// Publish this node's version as a branch in the remote; adopt the remote's.
    Branch,
}

impl Mode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
            Mode::Both => "both",
        }
    }
    /// Whether local writes go to the remote.
    pub fn pushes(self) -> bool {
        self != Mode::Pull
    }
}

impl OnConflict {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Rebase => "rebase",
            OnConflict::Branch => "branch",
        }
    }
}

/// One `[[sync.namespaces]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A namespace name, a prefix ending in `*`, or `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// push | pull | both.
    pub mode: Mode,
    /// rebase | branch.
    #[serde(default = "default_on_conflict")]
    pub on_conflict: OnConflict,
}

fn default_on_conflict() -> OnConflict {
    OnConflict::Rebase
}

impl Rule {
    /// Whether the rule covers a namespace name.
    pub fn matches(&self, ns: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => ns.starts_with(prefix),
            None => self.pattern == ns,
        }
    }
}

/// The `[sync]` table of the config file (every key optional but `remote`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SyncFile {
    pub remote: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
    pub interval_secs: Option<u64>,
    pub node_id: Option<String>,
    pub connect_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub sweep_interval_secs: Option<u64>,
    pub sweep_grace_secs: Option<u64>,
    #[serde(default)]
    pub namespaces: Vec<Rule>,
}

/// Default seconds between two sync rounds.
pub const DEFAULT_INTERVAL_SECS: u64 = 10;
/// Default bound on connecting to the remote.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 3;
/// Default bound on one request to the remote.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 10;
/// Default seconds between two sweeps of the remote by this node (0: never).
pub const DEFAULT_SWEEP_INTERVAL_SECS: u64 = 3600;
/// Default age an unreachable remote object (or superseded manifest) must
/// reach before a sweep deletes it.
pub const DEFAULT_SWEEP_GRACE_SECS: u64 = 86_400;

/// The resolved sync settings.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `s3://bucket/prefix` (or `file://DIR`, a directory laid out like a bucket).
    pub remote: String,
    /// Endpoint, region, credentials and the bounded timeouts.
    pub s3: S3Options,
    /// Time between two rounds.
    pub interval: Duration,
    /// This node's id (None: generated once and kept in `meta.redb`).
    pub node_id: Option<String>,
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
    /// Time between two sweeps of the remote (zero: only on demand).
    pub sweep_interval: Duration,
    /// Age before an unreachable remote object is deleted.
    pub sweep_grace: Duration,
}

impl SyncConfig {
    /// Resolve a `[sync]` table (already merged with flags and env).
    pub fn resolve(file: SyncFile) -> Result<SyncConfig, String> {
        let bad = |msg: String| format!("[sync] {msg}");
        let remote = file.remote.filter(|r| !r.is_empty()).ok_or_else(|| bad("remote is required".into()))?;
        if !(remote.starts_with("s3://") || remote.starts_with("file://")) {
            return Err(bad(format!("remote {remote:?} must be s3://bucket/prefix or file://DIR")));
        }
        if let Some(id) = &file.node_id {
            crate::layout::validate_name("node_id", id).map_err(|e| bad(e.to_string()))?;
        }
        let positive = |name: &str, v: Option<u64>, default: u64| match v.unwrap_or(default) {
            0 => Err(bad(format!("{name} must be at least 1"))),
            n => Ok(Duration::from_secs(n)),
        };
        let s3 = S3Options {
            endpoint: file.endpoint,
            region: file.region,
            access_key_id: file.access_key_id,
            secret_access_key: file.secret_access_key,
            allow_http: file.allow_http.unwrap_or(false),
            connect_timeout: Some(positive(
                "connect_timeout_secs",
                file.connect_timeout_secs,
                DEFAULT_CONNECT_TIMEOUT_SECS,
            )?),
            request_timeout: Some(positive(
                "request_timeout_secs",
                file.request_timeout_secs,
                DEFAULT_REQUEST_TIMEOUT_SECS,
            )?),
            max_retries: Some(2),
        };
        for (i, r) in file.namespaces.iter().enumerate() {
            let name = r.pattern.strip_suffix('*').unwrap_or(&r.pattern);
            if !name.is_empty() && !name.ends_with(['-', '_', '.']) {
                crate::layout::validate_name("namespace", name)
                    .map_err(|e| bad(format!("namespaces[{i}].match: {e}")))?;
            }
        }
        let rules = if file.namespaces.is_empty() {
            vec![Rule { pattern: "*".into(), mode: Mode::Push, on_conflict: OnConflict::Rebase }]
        } else {
            file.namespaces
        };
        Ok(SyncConfig {
            remote,
            s3,
            interval: positive("interval_secs", file.interval_secs, DEFAULT_INTERVAL_SECS)?,
            node_id: file.node_id,
            rules,
            sweep_interval: Duration::from_secs(
                file.sweep_interval_secs.unwrap_or(DEFAULT_SWEEP_INTERVAL_SECS),
            ),
            sweep_grace: positive("sweep_grace_secs", file.sweep_grace_secs, DEFAULT_SWEEP_GRACE_SECS)?,
        })
    }

    /// The rule that covers a namespace name, if any.
    pub fn rule_for(&self, ns: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(ns))
    }
}

/// Parse the compact rule list of `TIDEPOOL_SYNC_NAMESPACES` /
/// `--sync-namespaces`: `match=mode[:on_conflict]`, comma-separated (e.g.
/// `catalog-*=pull,orders=both:branch`).
pub fn parse_rules(s: &str) -> Result<Vec<Rule>, String> {
    let bad = |part: &str, why: &str| format!("sync namespaces {part:?}: {why}");
    let mut rules = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (pattern, rest) = part.split_once('=').ok_or_else(|| bad(part, "expected match=mode"))?;
        let (mode, on_conflict) = rest.split_once(':').unwrap_or((rest, "rebase"));
        let mode = match mode {
            "push" => Mode::Push,
            "pull" => Mode::Pull,
            "both" => Mode::Both,
            _ => return Err(bad(part, "mode must be push, pull or both")),
        };
        let on_conflict = match on_conflict {
            "rebase" => OnConflict::Rebase,
            "branch" => OnConflict::Branch,
            _ => return Err(bad(part, "on_conflict must be rebase or branch")),
        };
        rules.push(Rule { pattern: pattern.to_owned(), mode, on_conflict });
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml_text: &str) -> SyncFile {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn rules_match_first_and_default_to_push_everything() {
        let cfg = SyncConfig::resolve(file(
            r#"remote = "s3://b/p"
               [[namespaces]]
               match = "catalog-*"
               mode = "pull"
               [[namespaces]]
               match = "*"
               mode = "both"
               on_conflict = "branch""#,
        ))
        .unwrap();
        assert_eq!(cfg.rule_for("catalog-eu").unwrap().mode, Mode::Pull);
        assert_eq!(cfg.rule_for("orders").unwrap().on_conflict, OnConflict::Branch);
        let bare = SyncConfig::resolve(file(r#"remote = "s3://b""#)).unwrap();
        assert_eq!(bare.rule_for("anything").unwrap().mode, Mode::Push);
        assert_eq!(bare.interval, Duration::from_secs(DEFAULT_INTERVAL_SECS));
    }

    #[test]
    fn bad_settings_are_refused() {
        for text in [
            "",
            r#"remote = "http://x""#,
            r#"remote = "s3://b"
               interval_secs = 0"#,
            r#"remote = "s3://b"
               node_id = "a/b""#,
            r#"remote = "s3://b"
               [[namespaces]]
               match = "x"
               mode = "sideways""#,
        ] {
            let parsed: Result<SyncFile, _> = toml::from_str(text);
            assert!(parsed.map_err(|e| e.to_string()).and_then(SyncConfig::resolve).is_err());
        }
    }

    #[test]
    fn compact_rules_parse() {
        let r = parse_rules("catalog-*=pull, orders=both:branch").unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].matches("catalog-1") && !r[0].matches("orders"));
        assert_eq!((r[1].mode, r[1].on_conflict), (Mode::Both, OnConflict::Branch));
        assert!(parse_rules("x=push:merge").is_err());
        assert!(parse_rules("x").is_err());
    }
}
