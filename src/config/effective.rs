//! The effective configuration as a flat list of settings: what `tidepool
//! config check` prints, and what a reload (`SIGHUP`) compares to decide what
//! changed, what it can apply and what needs a restart.
//!
//! Invariants:
//! - One entry per config-file key (every `FileConfig` field), under the same
//!   name, in the order of the packaged example file's sections.
//! - A secret (API keys, the S3 credentials) is never rendered: [`render_text`]
//!   and [`render_json`] redact it; only [`changed`] sees the real value.
//! - `reloadable` is true exactly for the settings `api::reload` applies to a
//!   running daemon.

use super::Config;

/// What replaces a secret in any rendering.
pub const REDACTED: &str = "<redacted>";

/// One setting of the effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The config-file key (also the flag `--key-with-dashes`).
    pub key: &'static str,
    /// The value (`None`: not set, the feature is off or derived).
    pub value: Option<toml::Value>,
    /// Redact the value (or, for `api_keys`, each entry's `key`) when rendering.
    pub secret: bool,
    /// A running daemon applies a change of this setting on `SIGHUP`.
    pub reloadable: bool,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable (its name).
    Env(String),
    /// The config file.
    File,
    /// The built-in default (or a systemd-provided directory).
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File => f.write_str("file"),
            Source::Default => f.write_str("default"),
        }
    }
}

fn s(v: impl ToString) -> Option<toml::Value> {
    Some(toml::Value::String(v.to_string()))
}

fn int(v: impl TryInto<i64>) -> Option<toml::Value> {
    Some(toml::Value::Integer(v.try_into().unwrap_or(i64::MAX)))
}

fn setting(key: &'static str, value: Option<toml::Value>) -> Setting {
    Setting { key, value, secret: false, reloadable: false }
}

fn reloadable(key: &'static str, value: Option<toml::Value>) -> Setting {
    Setting { key, value, secret: false, reloadable: true }
}

fn secret(key: &'static str, value: Option<toml::Value>, reload: bool) -> Setting {
    Setting { key, value, secret: true, reloadable: reload }
}

/// The `graph_codes` value that makes `choice`.
fn graph_codes(choice: crate::engine::compact::GraphCodeChoice) -> String {
    use crate::engine::compact::GraphCodeChoice::{ByBudget, Fixed};
    match choice {
        ByBudget => "auto".to_owned(),
        Fixed(crate::index::vector::graph::GraphCode::Sq8) => "sq8".to_owned(),
        Fixed(crate::index::vector::graph::GraphCode::RaBitQ { bits }) => format!("rabitq{bits}"),
    }
}

/// Every setting of `cfg`, with its value.
pub fn settings(cfg: &Config) -> Vec<Setting> {
    let log_format = match cfg.log_format {
        super::LogFormat::Human => "human",
        super::LogFormat::Json => "json",
    };
    let c = &cfg.compaction;
    vec![
        setting("data_dir", s(cfg.data_dir.display())),
        setting("cache_dir", s(cfg.cache_dir.display())),
        setting("listen", s(&cfg.listen)),
        setting("store", cfg.store.as_ref().map_or_else(|| s(cfg.data_dir.join("store").display()), s)),
        setting("system", Some(toml::Value::Boolean(cfg.system))),
        setting("s3_endpoint", cfg.s3.endpoint.as_ref().and_then(s)),
        setting("s3_region", cfg.s3.region.as_ref().and_then(s)),
        secret("s3_access_key_id", cfg.s3.access_key_id.as_ref().and_then(s), false),
        secret("s3_secret_access_key", cfg.s3.secret_access_key.as_ref().and_then(s), false),
        setting("s3_allow_http", Some(toml::Value::Boolean(cfg.s3.allow_http))),
        setting("s3_connect_timeout_secs", cfg.s3.connect_timeout.and_then(|d| int(d.as_secs()))),
        setting("s3_request_timeout_secs", cfg.s3.request_timeout.and_then(|d| int(d.as_secs()))),
        setting("s3_probe_interval_secs", int(cfg.store_probe_interval.as_secs())),
        setting("log_format", s(log_format)),
        reloadable("log_level", s(&cfg.log_level)),
        reloadable("max_body_bytes", int(cfg.max_body_bytes)),
        setting("shutdown_timeout_secs", int(cfg.shutdown_timeout.as_secs())),
        setting("header_read_timeout_secs", int(cfg.header_read_timeout.as_secs())),
        setting("idle_timeout_secs", int(cfg.idle_timeout.as_secs())),
        reloadable("body_timeout_secs", int(cfg.body_timeout.as_secs())),
        reloadable("upload_timeout_secs", int(cfg.upload_timeout.as_secs())),
        reloadable("max_restore_bytes", int(cfg.max_restore_bytes)),
        setting("max_connections", int(cfg.max_connections)),
        setting("query_threads", int(cfg.query_threads)),
        reloadable("max_queued_queries", int(cfg.max_queued_queries)),
        reloadable("query_timeout_ms", int(cfg.query_timeout.as_millis())),
        reloadable("cache_budget_bytes", int(cfg.cache_budget_bytes)),
        reloadable("memory_budget_bytes", cfg.memory_budget.as_ref().and_then(|b| int(b.bytes))),
        reloadable("max_loaded_namespaces", int(cfg.max_loaded_namespaces)),
        reloadable("compaction_wal_objects", int(c.wal_objects)),
        reloadable("compaction_wal_bytes", int(c.wal_bytes)),
        reloadable("compaction_max_segments", int(c.max_segments)),
        reloadable("compaction_max_segment_rows", int(c.max_segment_rows)),
        reloadable("compaction_idle_ms", int(c.idle_ms)),
        reloadable("graph_codes", s(graph_codes(c.graph_code))),
        reloadable("backlog_bytes", int(c.backlog_bytes)),
        setting("retention_secs", int(cfg.retention.as_secs())),
        setting(
            "retention_max_ratio",
            Some(toml::Value::Float(cfg.retention_max_ratio.unwrap_or(f64::INFINITY))),
        ),
        setting("gc_interval_secs", int(cfg.gc_interval.as_secs())),
        setting("metrics_top_namespaces", int(cfg.metrics_top_namespaces)),
        setting("allowed_origins", Some(strings(&cfg.allowed_origins))),
        setting("allowed_hosts", Some(strings(&cfg.allowed_hosts))),
        setting("console", Some(toml::Value::Boolean(cfg.console))),
        secret("api_keys", Some(api_keys(cfg)), true),
        reloadable("models", Some(models(cfg))),
        setting("sync", cfg.sync.as_ref().map(sync_table)),
    ]
}

/// `[sync]` as a table, credentials redacted (sync is not reloadable, so no
/// reload needs to compare them).
fn sync_table(c: &crate::sync::SyncConfig) -> toml::Value {
    let mut t = toml::map::Map::new();
    let mut put = |k: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            t.insert(k.into(), v);
        }
    };
    let hidden = |v: &Option<String>| v.as_ref().map(|_| toml::Value::String(REDACTED.into()));
    put("remote", s(&c.remote));
    put("endpoint", c.s3.endpoint.as_ref().and_then(s));
    put("region", c.s3.region.as_ref().and_then(s));
    put("access_key_id", hidden(&c.s3.access_key_id));
    put("secret_access_key", hidden(&c.s3.secret_access_key));
    put("allow_http", Some(toml::Value::Boolean(c.s3.allow_http)));
    put("interval_secs", int(c.interval.as_secs()));
    put("node_id", c.node_id.as_ref().and_then(s));
    put("connect_timeout_secs", c.s3.connect_timeout.and_then(|d| int(d.as_secs())));
    put("request_timeout_secs", c.s3.request_timeout.and_then(|d| int(d.as_secs())));
    put("sweep_interval_secs", int(c.sweep_interval.as_secs()));
    put("sweep_grace_secs", int(c.sweep_grace.as_secs()));
    let rules = c.rules.iter().map(|r| {
        let mut rt = toml::map::Map::new();
        rt.insert("match".into(), toml::Value::String(r.pattern.clone()));
        rt.insert("mode".into(), toml::Value::String(r.mode.as_str().into()));
        rt.insert("on_conflict".into(), toml::Value::String(r.on_conflict.as_str().into()));
        toml::Value::Table(rt)
    });
    put("namespaces", Some(toml::Value::Array(rules.collect())));
    toml::Value::Table(t)
}

fn strings(v: &[String]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::String(s.clone())).collect())
}

fn api_keys(cfg: &Config) -> toml::Value {
    let entries = cfg.api_keys.iter().map(|k| {
        let mut t = toml::map::Map::new();
        t.insert("key".into(), toml::Value::String(k.key.clone()));
        t.insert("org".into(), toml::Value::String(k.org.clone()));
        t.insert("project".into(), toml::Value::String(k.project.clone()));
        t.insert("read_only".into(), toml::Value::Boolean(k.read_only));
        toml::Value::Table(t)
    });
    toml::Value::Array(entries.collect())
}

fn models(cfg: &Config) -> toml::Value {
    let entries = cfg.models.iter().map(|m| {
        let mut t = toml::map::Map::new();
        t.insert("name".into(), toml::Value::String(m.name.clone()));
        t.insert("path".into(), toml::Value::String(m.path.display().to_string()));
        toml::Value::Table(t)
    });
    toml::Value::Array(entries.collect())
}

/// The keys whose values differ between two setting lists of the same shape.
pub fn changed(old: &[Setting], new: &[Setting]) -> Vec<&'static str> {
    old.iter().zip(new).filter(|(a, b)| a.value != b.value).map(|(a, _)| a.key).collect()
}

/// The value as it may be shown: secrets redacted.
fn shown(setting: &Setting) -> Option<toml::Value> {
    let value = setting.value.clone()?;
    if !setting.secret {
        return Some(value);
    }
    Some(match value {
        toml::Value::Array(entries) => toml::Value::Array(entries.into_iter().map(redact_key).collect()),
        _ => toml::Value::String(REDACTED.into()),
    })
}

fn redact_key(entry: toml::Value) -> toml::Value {
    match entry {
        toml::Value::Table(mut t) => {
            t.insert("key".into(), toml::Value::String(REDACTED.into()));
            toml::Value::Table(t)
        }
        other => other,
    }
}

fn annotation(setting: &Setting, source: &Source) -> String {
    if setting.reloadable {
        format!("{source}, reloadable")
    } else {
        source.to_string()
    }
}

/// The settings as a TOML document, each line annotated with its source;
/// the output parses as a config file once the redacted secrets are filled in.
pub fn render_text(cfg: &Config, settings: &[Setting], source: &dyn Fn(&str) -> Source) -> String {
    let mut out = String::from("# tidepool: the configuration is valid\n");
    match &cfg.config_file {
        Some(p) => out.push_str(&format!("# config file: {}\n", p.display())),
        None => out.push_str("# config file: none (flags, environment and defaults only)\n"),
    }
    let mut tables = Vec::new();
    for st in settings {
        let note = annotation(st, &source(st.key));
        match shown(st) {
            Some(toml::Value::Array(entries)) if st.key == "api_keys" || st.key == "models" => {
                tables.push((st.key, entries, note))
            }
            Some(v) if st.key == "memory_budget_bytes" => {
                let how = cfg.memory_budget.as_ref().map(|b| b.describe()).unwrap_or_default();
                out.push_str(&format!("{} = {v}  # {note}; {how}\n", st.key));
            }
            Some(v) => out.push_str(&format!("{} = {v}  # {note}\n", st.key)),
            None => out.push_str(&format!("# {} is not set  # {note}\n", st.key)),
        }
    }
    for (key, entries, note) in tables {
        if entries.is_empty() && key == "api_keys" {
            out.push_str(&format!("# no {key}: open access (loopback only)  # {note}\n"));
        }
        if entries.is_empty() && key == "models" {
            out.push_str(&format!("# no {key}: no local embedding or rerank  # {note}\n"));
        }
        for entry in entries {
            out.push_str(&format!("\n[[{key}]]  # {note}\n"));
            if let toml::Value::Table(t) = entry {
                for (k, v) in t {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
    }
    out
}

/// The settings as JSON: `{"valid": true, "config_file", "settings": [{key, value, source, reloadable}]}`.
pub fn render_json(cfg: &Config, settings: &[Setting], source: &dyn Fn(&str) -> Source) -> serde_json::Value {
    let list: Vec<serde_json::Value> = settings
        .iter()
        .map(|st| {
            serde_json::json!({
                "key": st.key,
                "value": shown(st).map(|v| serde_json::to_value(v).unwrap_or_default()),
                "source": source(st.key).to_string(),
                "reloadable": st.reloadable,
            })
        })
        .collect();
    serde_json::json!({
        "valid": true,
        "config_file": cfg.config_file.as_ref().map(|p| p.display().to_string()),
        "settings": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, FileConfig, ServeArgs};

    fn config(file: &str) -> Config {
        let file: FileConfig = toml::from_str(file).unwrap();
        let args = ServeArgs { data_dir: Some("/d".into()), ..ServeArgs::default() };
        Config::from_parts(&args, file, &|_| None).unwrap()
    }

    #[test]
    fn every_file_key_is_a_setting() {
        let keys: Vec<&str> = settings(&config("")).iter().map(|s| s.key).collect();
        let fields = format!("{:?}", FileConfig::default());
        for field in fields.split(&['{', ',', ' '][..]).filter_map(|t| t.strip_suffix(':')) {
            assert!(keys.contains(&field), "{field} is missing from the effective settings");
        }
        assert_eq!(keys.len(), fields.matches(':').count(), "no setting without a file key");
    }

    #[test]
    fn secrets_never_render() {
        let cfg = config(
            "s3_secret_access_key = \"hunter2\"\n[[api_keys]]\nkey = \"sekrit\"\norg = \"a\"\nproject = \"p\"\n",
        );
        let list = settings(&cfg);
        let text = render_text(&cfg, &list, &|_| Source::File);
        let json = render_json(&cfg, &list, &|_| Source::Default).to_string();
        for out in [&text, &json] {
            assert!(!out.contains("hunter2") && !out.contains("sekrit"), "{out}");
            assert!(out.contains(REDACTED) && out.contains("\"a\""), "{out}");
        }
        assert!(text.contains("listen = \"127.0.0.1:7474\"  # file"), "{text}");
        assert!(text.contains("cache_budget_bytes = ") && text.contains("reloadable"), "{text}");
    }

    #[test]
    fn changed_sees_secret_changes() {
        let mut a = config("");
        let before = settings(&a);
        a.api_keys.push(ApiKeyConfig {
            key: "k".into(),
            org: "o".into(),
            project: "p".into(),
            read_only: false,
        });
        a.compaction.wal_objects += 1;
        assert_eq!(changed(&before, &settings(&a)), vec!["compaction_wal_objects", "api_keys"]);
    }
}
