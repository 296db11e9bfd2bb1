//! The admin CLI client: `tidepool admin ...` talks to a running daemon over
//! its HTTP API (the same turbopuffer v2 wire format the SDKs use), so every
//! command here could equally be done with `curl`.
//!
//! Commands: `ns list | info | delete | copy [--deep] | branch`, `write`
//! (NDJSON documents, sent as `upsert_rows` batches), `query`, `export`
//! (NDJSON, the format `write` reads back), `snapshot` / `restore` (snapshot
//! files, streamed to and from the daemon; written locally through a temp
//! file, fsync, rename and directory fsync, and verified before use) and
//! `repair [--sweep]` and `verify` (both run as daemon jobs the CLI polls,
//! with a progress line on a terminal).
//!
//! Output: an aligned table when stdout is a terminal, otherwise (or with
//! `--json`) the JSON the daemon returned, pretty-printed. Progress for long
//! writes goes to stderr, and only when stderr is a terminal.
//!
//! Errors are returned as a one-line message naming the HTTP status and the
//! daemon's `{"status":"error","error":...}` message, for the caller to print.
//!
//! Layout: this file holds the command definitions and [`run`]; `client`
//! the HTTP client (retries, error messages), `output` tables and JSON
//! output, `ns` the namespace commands, `write` NDJSON ingestion, `query`
//! queries, `transfer` copy/branch/repair/verify/snapshot/restore/export,
//! `jobs` the polling of long admin operations.

mod client;
mod jobs;
mod ns;
mod output;
mod query;
mod sync;
#[cfg(test)]
mod tests;
mod transfer;
mod write;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use self::client::*;
use self::jobs::*;
use self::ns::*;
use self::output::*;
use self::query::*;
use self::transfer::*;
use self::write::*;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// How output is chosen, shared by every subcommand's help.
const OUTPUT_HELP: &str = "Output of the admin commands (ns, write, query): an aligned table when stdout is a \
terminal; JSON (the daemon's response, pretty-printed) with --json or whenever stdout is not a terminal (a pipe \
or a file), so scripts always get JSON. Errors go to stderr with the HTTP status and the daemon's message, and \
the exit status is non-zero.";

/// An admin command, run against a daemon at `--url`.
#[derive(clap::Subcommand, Debug)]
#[command(after_help = OUTPUT_HELP)]
pub enum AdminCommand {
    /// List, inspect and delete namespaces.
    #[command(after_help = OUTPUT_HELP)]
    Ns {
        /// The namespace operation.
        #[command(subcommand)]
        cmd: NsCommand,
    },
    /// Offline-first sync to the daemon's remote bucket: status, or a round now.
    Sync {
        /// The sync operation.
        #[command(subcommand)]
        cmd: SyncCommand,
    },
    /// Upsert documents from NDJSON (one JSON object per line) into a namespace.
    ///
    /// Each line is one document, e.g. `{"id": 1, "vector": [0.1, 0.2], "title": "hello"}`:
    /// `id` (an unsigned integer, a UUID or a string) is required, `vector` is optional and
    /// every other key is an attribute. Blank lines are skipped. Documents are sent as
    /// `POST /v2/namespaces/NS` with `{"upsert_rows": [...]}` in batches; a document with an
    /// existing id replaces it. The namespace is created by the first batch. A bad line
    /// stops the import with an error naming its line number (batches already sent stay
    /// written). A progress line is shown on stderr when it is a terminal, and a summary
    /// is printed at the end.
    #[command(after_help = OUTPUT_HELP)]
    Write {
        /// The namespace to write to (created if missing). Names match `[A-Za-z0-9-_.]{1,128}`.
        namespace: String,
        /// The NDJSON file to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Documents per request.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// The distance metric, sent with the first batch. It is fixed when the namespace is
        /// created; a later write may repeat it but not change it.
        #[arg(long, value_parser = ["cosine_distance", "euclidean_squared"])]
        distance_metric: Option<String>,
    },
    /// Query a namespace: filter, order and return documents.
    ///
    /// Sends `POST /v2/namespaces/NS/query`. Without --rank-by the documents come back in id
    /// order (`["id","asc"]`).
    #[command(after_help = OUTPUT_HELP)]
    Query {
        /// The namespace to query.
        namespace: String,
        /// A filter as JSON, e.g. `["And",[["year","Gte",2020],["tag","Eq","rust"]]]`.
        #[arg(long, value_name = "JSON")]
        filters: Option<String>,
        /// The ordering as JSON, e.g. `["year","desc"]` or `["vector","ANN",[0.1,0.2]]`
        /// [default: `["id","asc"]`].
        #[arg(long, value_name = "JSON")]
        rank_by: Option<String>,
        /// The number of documents to return (1-10000).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        top_k: u64,
        /// Attributes to return, comma-separated (e.g. `title,year`). Without it only ids (and
        /// `$dist` for ranked queries) come back.
        #[arg(long, value_name = "A,B,...", value_delimiter = ',', conflicts_with = "all_attributes")]
        include_attributes: Option<Vec<String>>,
        /// Return every attribute (`"include_attributes": true`).
        #[arg(long)]
        all_attributes: bool,
    },
    /// Rebuild the project's refcounts from every live manifest (`POST /v1/_admin/repair`).
    ///
    /// With --sweep, objects (WAL batches, segment files) that no retained manifest of any
    /// namespace of the project references, and that are older than the grace period, are
    /// deleted. With --retention-secs, manifest generations superseded longer ago than that
    /// are collected first (tombstone, then delete; never the newest). Prints a report.
    #[command(after_help = OUTPUT_HELP)]
    Repair {
        /// Delete unreferenced objects older than the grace period.
        #[arg(long)]
        sweep: bool,
        /// Objects younger than this many seconds are never swept (in-flight writes).
        #[arg(long, default_value_t = 3600)]
        grace_secs: u64,
        /// Collect manifest generations superseded more than this many seconds ago.
        #[arg(long, value_name = "SECS")]
        retention_secs: Option<u64>,
    },
    /// Read every object of the project, check it against its manifest checksum and decode it
    /// whole (`POST /v1/_admin/verify`); print each damaged object with the namespaces that
    /// reference it. Exits with an error when something is damaged.
    #[command(after_help = OUTPUT_HELP)]
    Verify,
    /// Save a namespace at one generation into a self-describing snapshot file.
    ///
    /// Streams `GET /v1/namespaces/NS/_admin/snapshot` into a temporary file next to FILE,
    /// verifies every checksum, fsyncs it, renames it over FILE and fsyncs the directory, so
    /// FILE is either the old file or a complete snapshot, never a torn one.
    Snapshot {
        /// The namespace to save.
        namespace: String,
        /// The snapshot file to write.
        file: PathBuf,
        /// Save this retained older generation instead of the newest.
        #[arg(long)]
        generation: Option<u64>,
    },
    /// Restore a snapshot file into a new namespace (`POST /v1/namespaces/NS/_admin/restore`).
    ///
    /// The file is verified locally first (a corrupted file is refused before anything is
    /// sent), then uploaded; the daemon verifies it again, writes its objects under NS and
    /// commits NS's manifest last. NS must not exist (or be deleted or empty). The upload is
    /// held in memory by this client.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The namespace to create.
        namespace: String,
    },
    /// Export every live document of a namespace as NDJSON (`GET /v1/namespaces/NS/export`).
    ///
    /// One JSON document per line, in id order, at one consistent generation; `tidepool write`
    /// reads it back. Without FILE (or with `-`) the lines go to stdout; a FILE is written
    /// through a temporary file and renamed into place when complete.
    Export {
        /// The namespace to export.
        namespace: String,
        /// The output file; `-` or nothing writes standard output.
        file: Option<PathBuf>,
        /// Export this retained older generation instead of the newest.
        #[arg(long)]
        generation: Option<u64>,
    },
}

/// A sync operation (`[sync]` on the daemon).
#[derive(clap::Subcommand, Debug)]
pub enum SyncCommand {
    /// The remote's reachability and each synced namespace's state (`GET /v1/sync/status`).
    #[command(after_help = OUTPUT_HELP)]
    Status,
    /// Run one sync round now and wait for it (`POST /v1/sync/run`); non-zero exit if a
    /// namespace did not sync.
    #[command(after_help = OUTPUT_HELP)]
    Run {
        /// Then garbage-collect this project in the remote (unreachable objects older than
        /// the grace period, superseded manifests).
        #[arg(long)]
        sweep: bool,
    },
}

/// A namespace operation.
#[derive(clap::Subcommand, Debug)]
pub enum NsCommand {
    /// List namespaces (`GET /v1/namespaces`).
    ///
    /// Without --page-size every page is fetched by following `next_cursor`. With
    /// --page-size one page is fetched and the cursor for the next one is printed.
    #[command(after_help = OUTPUT_HELP)]
    List {
        /// Only namespaces whose name starts with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Start from this cursor (a `next_cursor` from an earlier page).
        #[arg(long)]
        cursor: Option<String>,
        /// Fetch a single page of at most this many namespaces (1-1000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
        page_size: Option<u64>,
    },
    /// Show a namespace's metadata: size, timestamps, index state and schema
    /// (`GET /v2/namespaces/NS/metadata`).
    #[command(after_help = OUTPUT_HELP)]
    Info {
        /// The namespace to inspect.
        namespace: String,
    },
    /// Delete a namespace and all its documents (`DELETE /v2/namespaces/NS`).
    ///
    /// Asks for confirmation when standard input is a terminal; otherwise --yes is required.
    #[command(after_help = OUTPUT_HELP)]
    Delete {
        /// The namespace to delete.
        namespace: String,
        /// Delete without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Compact a namespace now: fold its WAL into segments and merge small segments
    /// (`POST /v1/namespaces/NS/_admin/compact`). The daemon also compacts in the
    /// background once its thresholds are crossed.
    Compact {
        /// The namespace to compact.
        namespace: String,
    },
    /// Copy a namespace (`POST /v1/namespaces/DST/_admin/copy`).
    ///
    /// By default the copy is copy-on-write: DST's manifest references SRC's immutable
    /// objects, so it is instant whatever the size. With --deep every object is duplicated
    /// under DST, so the copy shares nothing with SRC. DST must not exist (or be empty).
    #[command(after_help = OUTPUT_HELP)]
    Copy {
        /// The source namespace.
        source: String,
        /// The destination namespace.
        destination: String,
        /// Duplicate every object instead of sharing them.
        #[arg(long)]
        deep: bool,
        /// Copy this retained older generation of SRC.
        #[arg(long)]
        generation: Option<u64>,
    },
    /// Branch a namespace: a copy-on-write copy that records its parent (lineage).
    ///
    /// Sends `POST /v2/namespaces/DST` with `branch_from_namespace`. DST must not exist (or be
    /// empty). Writes to either side are invisible to the other.
    #[command(after_help = OUTPUT_HELP)]
    Branch {
        /// The parent namespace.
        source: String,
        /// The new branch.
        destination: String,
        /// Branch from this retained older generation of SRC.
        #[arg(long)]
        generation: Option<u64>,
    },
}

/// Runs one admin command against the daemon at `url` (e.g. `http://127.0.0.1:8080`).
///
/// `api_key` is sent as `Authorization: Bearer KEY` (no header when `None`). `json`
/// forces JSON output; JSON is also used whenever stdout is not a terminal.
pub async fn run(cmd: AdminCommand, url: &str, api_key: Option<&str>, json: bool) -> Result<(), String> {
    let client = Client::new(url, api_key)?;
    let out = Output { json: json || !std::io::stdout().is_terminal() };
    match cmd {
        AdminCommand::Ns { cmd: NsCommand::List { prefix, cursor, page_size } } => {
            ns_list(&client, &out, prefix, cursor, page_size).await
        }
        AdminCommand::Ns { cmd: NsCommand::Info { namespace } } => ns_info(&client, &out, &namespace).await,
        AdminCommand::Ns { cmd: NsCommand::Compact { namespace } } => {
            ns_compact(&client, &out, &namespace).await
        }
        AdminCommand::Ns { cmd: NsCommand::Delete { namespace, yes } } => {
            ns_delete(&client, &out, &namespace, yes).await
        }
        AdminCommand::Write { namespace, file, batch_size, distance_metric } => {
            let opts = WriteOpts { batch_size, distance_metric };
            write(&client, &out, &namespace, file, opts).await
        }
        AdminCommand::Ns { cmd: NsCommand::Copy { source, destination, deep, generation } } => {
            ns_copy(&client, &out, &source, &destination, deep, generation).await
        }
        AdminCommand::Ns { cmd: NsCommand::Branch { source, destination, generation } } => {
            ns_branch(&client, &out, &source, &destination, generation).await
        }
        AdminCommand::Repair { sweep, grace_secs, retention_secs } => {
            repair(&client, &out, sweep, grace_secs, retention_secs).await
        }
        AdminCommand::Verify => verify(&client, &out).await,
        AdminCommand::Sync { cmd: SyncCommand::Status } => sync::sync_status(&client, &out).await,
        AdminCommand::Sync { cmd: SyncCommand::Run { sweep } } => sync::sync_run(&client, &out, sweep).await,
        AdminCommand::Snapshot { namespace, file, generation } => {
            snapshot(&client, &out, &namespace, &file, generation).await
        }
        AdminCommand::Restore { file, namespace } => restore(&client, &out, &file, &namespace).await,
        AdminCommand::Export { namespace, file, generation } => {
            export(&client, &namespace, file, generation).await
        }
        AdminCommand::Query { namespace, filters, rank_by, top_k, include_attributes, all_attributes } => {
            let include = match (include_attributes, all_attributes) {
                (_, true) => Some(Value::Bool(true)),
                (Some(list), false) => Some(json!(list)),
                (None, false) => None,
            };
            let body = query_body(filters.as_deref(), rank_by.as_deref(), top_k, include)?;
            query(&client, &out, &namespace, &body).await
        }
    }
}
