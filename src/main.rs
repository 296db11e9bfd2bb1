//! The `tidepool` command line: `tidepool serve` runs the daemon; `ns`,
//! `write` and `query` are admin commands that talk to a running daemon over
//! HTTP (`--url`, `--api-key`, `--json` are global).
//!
//! Invariants: exit status 0 on success (including a drained shutdown after
//! SIGTERM/SIGINT), 2 on a configuration error, 1 on any other failure; the
//! daemon announces `listening on http://ADDR` on stdout once it accepts
//! connections, and logs go to stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tidepool::config::{Config, LogFormat, ServeArgs};

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
    #[command(flatten)]
    Admin(tidepool::cli::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
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
    init_logging(cfg.log_format);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let signals = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        tidepool::api::run_daemon(&cfg, signals).await
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

/// Logs go to stderr; under systemd with stderr connected to the journal
/// (`$JOURNAL_STREAM` names stderr's device and inode) they go to journald
/// natively instead: no ANSI, one entry per event, levels mapped to
/// priorities, fields (the request id among them) as journal fields.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEPOOL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(journald.with_syslog_identifier("tidepool".into()))
                .init();
            return;
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
