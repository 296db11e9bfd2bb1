//! The `tidepool` command line: `tidepool serve` runs the daemon; `tidepool
//! config check` validates and prints the configuration `serve` would run
//! with; `ns`, `write`, `query`, ... are admin commands that talk to a running
//! daemon over HTTP (`--url`, `--api-key`, `--json` are global).
//!
//! `SIGHUP` makes a running daemon reload its configuration (`api::reload`).
//!
//! Invariants: exit status 0 on success (including a drained shutdown after
//! SIGTERM/SIGINT), 2 on a configuration error, 1 on any other failure; the
//! daemon announces `listening on http://ADDR` on stdout once it accepts
//! connections, and logs go to stderr.

use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tidepool::config::effective::{render_json, render_text, settings, Source};
use tidepool::config::{Config, LogFormat, ServeArgs};
use tidepool::models::ModelSet;

#[derive(Debug, Parser)]
#[command(name = "tidepool", version, about = "An edge search daemon speaking the turbopuffer v2 API")]
struct Cli {
    /// Daemon URL for the admin commands.
    #[arg(long, global = true, env = "TIDEPOOL_URL", default_value = "http://127.0.0.1:7474")]
    url: String,
    /// API key for the admin commands.
    #[arg(long, global = true, env = "TIDEPOOL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Machine-readable JSON output for the admin commands.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(Box<ServeArgs>),
    /// Inspect the daemon's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    #[command(flatten)]
    Admin(tidepool::cli::AdminCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration `serve` would run with (same flags, environment and file) and
    /// print every effective setting with its source, secrets redacted. Exit status 2 if invalid.
    Check(Box<ServeArgs>),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Config(ConfigCommand::Check(args)) => {
            let sub = matches.subcommand_matches("config").and_then(|m| m.subcommand_matches("check"));
            config_check(&args, sub, cli.json)
        }
        Command::Admin(cmd) => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(tidepool::cli::run(cmd, &cli.url, cli.api_key.as_deref(), cli.json)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tidepool: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("tidepool: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn serve(args: &ServeArgs) -> ExitCode {
    let cfg = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tidepool: {e}");
            return ExitCode::from(2);
        }
    };
    let set_log_filter = init_logging(cfg.log_format, &cfg.log_level);
    // Before the runtime's threads: freed batch and build buffers go back to
    // the OS instead of staying resident in the arenas (src/heap.rs).
    tidepool::heap::return_large_frees_directly();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let signals = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let requests = reload_requests().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let hooks = tidepool::api::ReloadHooks { args: args.clone(), requests, set_log_filter };
        tidepool::api::run_daemon(&cfg, signals, Some(hooks)).await
    });
    // Abandoned request tasks (after a drain timeout) are dropped here, which
    // drops the last engine handle and releases the data-dir lock.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tidepool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tidepool config check`: resolve exactly as `serve` would and print the
/// effective settings with where each came from (flag, env, file, default).
fn config_check(args: &ServeArgs, matches: Option<&ArgMatches>, json: bool) -> ExitCode {
    let cfg = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"valid": false, "error": e.0}));
            }
            eprintln!("tidepool: the configuration is invalid: {e}");
            return ExitCode::from(2);
        }
    };
    let list = settings(&cfg);
    let file_keys: Vec<String> = cfg
        .config_file
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let source = |key: &str| setting_source(key, matches, &file_keys);
    let specs = cfg.model_specs();
    // Loaded as `serve` would load them: a missing or damaged model makes the configuration invalid.
    let models = match ModelSet::load(&specs) {
        Ok(m) => m,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"valid": false, "error": format!("models: {e}")}));
            }
            eprintln!("tidepool: the configuration is invalid: models: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let mut out = render_json(&cfg, &list, &source);
        out["models"] = models.iter().map(|m| model_json(m)).collect();
        println!("{out}");
    } else {
        print!("{}", render_text(&cfg, &list, &source));
        for m in models.iter() {
            let v = model_json(m);
            println!(
                "# model {}: {}, {} dims, {} max tokens ({})",
                m.name(),
                v["kind"].as_str().unwrap_or_default(),
                m.dims(),
                m.max_tokens(),
                m.path().display()
            );
        }
    }
    ExitCode::SUCCESS
}

/// What `config check` reports of a loaded model.
fn model_json(m: &tidepool::models::Model) -> serde_json::Value {
    serde_json::json!({"name": m.name(), "path": m.path().display().to_string(), "kind": m.kind().name(),
        "dims": m.dims(), "max_tokens": m.max_tokens()})
}

fn setting_source(key: &str, matches: Option<&ArgMatches>, file_keys: &[String]) -> Source {
    use clap::parser::ValueSource;
    let from_args = matches.and_then(|m| m.try_get_raw(key).ok().flatten().and_then(|_| m.value_source(key)));
    match from_args {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => {
            let cmd = ServeArgs::augment_args(clap::Command::new("serve"));
            let var = cmd.get_arguments().find(|a| a.get_id() == key).and_then(|a| a.get_env());
            Source::Env(var.map(|v| v.to_string_lossy().into_owned()).unwrap_or_default())
        }
        _ if file_keys.iter().any(|k| k == key) => Source::File,
        _ => Source::Default,
    }
}

/// Logs go to stderr; under systemd with stderr connected to the journal
/// (`$JOURNAL_STREAM` names stderr's device and inode) they go to journald
/// natively instead: no ANSI, one entry per event, levels mapped to
/// priorities, fields (the request id among them) as journal fields.
/// Returns the setter a configuration reload uses to change the filter.
fn init_logging(format: LogFormat, level: &str) -> tidepool::api::reload::LogFilterSetter {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    // The level was validated with the configuration.
    let (filter, handle) =
        reload::Layer::new(EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")));
    let registry = tracing_subscriber::registry().with(filter);
    let journald = if stderr_is_journal() { tracing_journald::layer().ok() } else { None };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match (journald, format) {
        (Some(j), _) => registry.with(j.with_syslog_identifier("tidepool".into())).init(),
        (None, LogFormat::Human) => {
            registry.with(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)).init()
        }
        (None, LogFormat::Json) => registry.with(fmt::layer().json().with_writer(std::io::stderr)).init(),
    }
    Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// One item per `SIGHUP`.
#[cfg(unix)]
fn reload_requests() -> std::io::Result<std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let hangup = signal(SignalKind::hangup())?;
    Ok(Box::pin(futures::stream::unfold(hangup, |mut s| async move {
        s.recv().await?;
        tracing::info!("SIGHUP: reloading the configuration");
        Some(((), s))
    })))
}

#[cfg(not(unix))]
fn reload_requests() -> std::io::Result<std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send>>> {
    Ok(Box::pin(futures::stream::pending()))
}

/// Whether stderr is the journal stream systemd connected (`$JOURNAL_STREAM`
/// is `DEVICE:INODE` of it; a redirected stderr no longer matches).
#[cfg(unix)]
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    stream.to_string_lossy() == format!("{}:{}", meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn stderr_is_journal() -> bool {
    false
}

/// Resolves on SIGTERM or SIGINT. The handlers are registered when this is
/// called (before the daemon announces itself), not when first polled, so a
/// signal sent right after `listening on` is never lost.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    })
}
