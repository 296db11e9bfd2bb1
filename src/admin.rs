//! The admin CLI client: `tidepool admin ...` talks to a running daemon over
//! its HTTP API (the same turbopuffer v2 wire format the SDKs use), so every
//! command here could equally be done with `curl`.
//!
//! Commands: `ns list | info | delete | copy [--deep] | branch`, `write`
//! (NDJSON documents, sent as `upsert_rows` batches), `query`, `export`
//! (NDJSON, the format `write` reads back), `snapshot` / `restore` (snapshot
//! files, streamed to and from the daemon; written locally through a temp
//! file, fsync, rename and directory fsync, and verified before use) and
//! `repair [--sweep]`.
//!
//! Output: an aligned table when stdout is a terminal, otherwise (or with
//! `--json`) the JSON the daemon returned, pretty-printed. Progress for long
//! writes goes to stderr, and only when stderr is a terminal.
//!
//! Errors are returned as a one-line message naming the HTTP status and the
//! daemon's `{"status":"error","error":...}` message, for the caller to print.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------------------------------------
// HTTP

/// Per-request timeout: generous, because a large write batch can take a while to commit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts for a request the daemon pushed back with 429 (backpressure: nothing was applied).
const MAX_ATTEMPTS: u32 = 8;

/// A thin JSON-over-HTTP client for the daemon.
struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl Client {
    fn new(url: &str, api_key: Option<&str>) -> Result<Client, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid --url {url:?}: {e}"))?;
        if parsed.scheme() != "http" {
            return Err(format!(
                "invalid --url {url:?}: only http:// is supported (the admin client talks to a local daemon)"
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("tidepool-admin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            base: url.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()).map(str::to_string),
        })
    }

    /// Sends a request and returns the JSON body of a 2xx response.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        loop {
            let mut req = self.http.request(method.clone(), &url).query(query);
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.map_err(|e| format!("{method} {url}: {}", describe_reqwest(&e)))?;
            let status = resp.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS && attempt < MAX_ATTEMPTS {
                tokio::time::sleep(retry_delay(resp.headers(), attempt)).await;
                attempt += 1;
                continue;
            }
            let text = resp.text().await.map_err(|e| format!("{method} {url}: reading the response: {e}"))?;
            if !status.is_success() {
                return Err(http_error(status, &text, self.api_key.is_some()));
            }
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| {
                format!("{method} {url}: the response is not JSON ({e}): {}", clip(&text, 200))
            });
        }
    }
}

/// The wait before retrying a 429: `retry-after-ms`, else `retry-after` seconds, else
/// exponential backoff; capped at 30 s.
fn retry_delay(headers: &reqwest::header::HeaderMap, attempt: u32) -> Duration {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let delay = if let Some(ms) = header("retry-after-ms") {
        Duration::from_millis(ms)
    } else if let Some(s) = header("retry-after") {
        Duration::from_secs(s)
    } else {
        Duration::from_millis(250u64 << attempt.min(6))
    };
    delay.min(Duration::from_secs(30))
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("cannot connect to the daemon ({e}); is `tidepool serve` running at this --url?")
    } else if e.is_timeout() {
        format!("timed out ({e})")
    } else {
        e.to_string()
    }
}

/// The message for a non-2xx response: the status plus the daemon's error message.
fn http_error(status: reqwest::StatusCode, body: &str, sent_key: bool) -> String {
    let message = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(obj)) => match obj.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => Value::Object(obj).to_string(),
        },
        _ if body.trim().is_empty() => "(empty response)".to_string(),
        _ => clip(body.trim(), 500),
    };
    let mut msg = format!("HTTP {status}: {message}");
    if status == reqwest::StatusCode::UNAUTHORIZED && !sent_key {
        msg.push_str(" (hint: pass --api-key)");
    }
    msg
}

/// Checks a namespace name locally (`[A-Za-z0-9-_.]{1,128}`), so it can go in a path as is.
fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 128
        && ns.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid namespace name {ns:?}: names are 1-128 characters from [A-Za-z0-9-_.]"))
    }
}

// ---------------------------------------------------------------------------------------------
// Output

struct Output {
    json: bool,
}

impl Output {
    fn json(&self, v: &Value) -> Result<(), String> {
        let s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        emit(&format!("{s}\n"))
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(s: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing output: {e}")),
        _ => Ok(()),
    }
}

/// Widest a table cell gets before it is cut with `…`.
const MAX_CELL: usize = 60;

/// Formats rows as left-aligned columns separated by two spaces, with a header line.
/// Cells are cut to [`MAX_CELL`] characters; trailing spaces are trimmed.
fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..headers.len()).map(|i| clip(r.get(i).map_or("", String::as_str), MAX_CELL)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Renders a JSON value for a table cell: strings bare, null empty, float arrays (vectors)
/// rounded to 4 decimals and cut after 3 elements, everything else as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Array(items) if items.iter().all(Value::is_number) && items.iter().any(Value::is_f64) => {
            let short = |x: &Value| {
                let f = x.as_f64().unwrap_or(f64::NAN);
                let s = format!("{f:.4}");
                let s = s.trim_end_matches('0');
                s.strip_suffix('.').unwrap_or(s).to_string()
            };
            let head: Vec<String> = items.iter().take(3).map(short).collect();
            if items.len() > 3 {
                format!("[{}, … ({} dims)]", head.join(", "), items.len())
            } else {
                format!("[{}]", head.join(", "))
            }
        }
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// ns list / info / delete

async fn ns_list(
    client: &Client,
    out: &Output,
    prefix: Option<String>,
    cursor: Option<String>,
    page_size: Option<u64>,
) -> Result<(), String> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(p) = &prefix {
        query.push(("prefix", p.clone()));
    }
    if let Some(n) = page_size {
        query.push(("page_size", n.to_string()));
    }
    if page_size.is_some() {
        // One page, as the daemon returned it (with its next_cursor).
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let page = client.send(reqwest::Method::GET, "/v1/namespaces", &query, None).await?;
        if out.json {
            return out.json(&page);
        }
        let ids = page_ids(&page)?;
        let mut text = namespace_table(&ids);
        if let Some(next) = page.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            let _ = writeln!(text, "next cursor: {next}");
        }
        return emit(&text);
    }

    let mut all = Vec::new();
    let mut cursor = cursor;
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = client.send(reqwest::Method::GET, "/v1/namespaces", &q, None).await?;
        all.extend(page_ids(&page)?);
        match page.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
            Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_string()),
            Some(_) => return Err("the daemon returned the same next_cursor twice; stopping".to_string()),
            None => break,
        }
    }
    if out.json {
        let list: Vec<Value> = all.iter().map(|id| json!({ "id": id })).collect();
        out.json(&json!({ "namespaces": list }))
    } else {
        emit(&namespace_table(&all))
    }
}

fn page_ids(page: &Value) -> Result<Vec<String>, String> {
    let list = page
        .get("namespaces")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("unexpected namespace list response: {}", clip(&page.to_string(), 200)))?;
    Ok(list
        .iter()
        .map(|n| n.get("id").and_then(Value::as_str).map_or_else(|| n.to_string(), str::to_string))
        .collect())
}

fn namespace_table(ids: &[String]) -> String {
    let rows: Vec<Vec<String>> = ids.iter().map(|id| vec![id.clone()]).collect();
    let mut text = format_table(&["NAMESPACE"], &rows);
    let _ = writeln!(text, "({} namespace{})", ids.len(), if ids.len() == 1 { "" } else { "s" });
    text
}

async fn ns_info(client: &Client, out: &Output, ns: &str) -> Result<(), String> {
    check_namespace(ns)?;
    let meta = client.send(reqwest::Method::GET, &format!("/v2/namespaces/{ns}/metadata"), &[], None).await?;
    if out.json {
        out.json(&meta)
    } else {
        emit(&format_metadata(ns, &meta))
    }
}

/// The human view of a metadata response: a key/value block, then the schema as a table.
fn format_metadata(ns: &str, meta: &Value) -> String {
    let get = |k: &str| meta.get(k).map(cell).unwrap_or_default();
    let index = match meta.get("index") {
        Some(idx) => {
            let status = idx.get("status").and_then(Value::as_str).unwrap_or("unknown");
            match (idx.get("unindexed_rows"), idx.get("unindexed_bytes")) {
                (Some(r), Some(b)) => format!("{status} ({r} unindexed rows, {b} bytes)"),
                _ => status.to_string(),
            }
        }
        None => String::new(),
    };
    let mut pairs: Vec<Vec<String>> = vec![
        vec!["namespace".into(), ns.into()],
        vec!["approx_row_count".into(), get("approx_row_count")],
        vec!["approx_logical_bytes".into(), get("approx_logical_bytes")],
        vec!["created_at".into(), get("created_at")],
        vec!["updated_at".into(), get("updated_at")],
        vec!["index".into(), index],
    ];
    if let Some(mode) = meta.get("encryption").and_then(|e| e.get("mode")) {
        pairs.push(vec!["encryption".into(), cell(mode)]);
    }
    for key in ["read_only", "pinning", "sharding"] {
        if let Some(v) = meta.get(key) {
            pairs.push(vec![key.into(), cell(v)]);
        }
    }
    let mut text = format_table(&["FIELD", "VALUE"], &pairs);
    if let Some(schema) = meta.get("schema").and_then(Value::as_object) {
        text.push('\n');
        text.push_str(&format_schema(schema));
    }
    text
}

fn format_schema(schema: &Map<String, Value>) -> String {
    let rows: Vec<Vec<String>> = schema
        .iter()
        .map(|(name, spec)| {
            let (ty, extra) = match spec {
                Value::Object(o) => {
                    let ty = o.get("type").map(cell).unwrap_or_default();
                    let extra: Vec<String> = o
                        .iter()
                        .filter(|(k, v)| k.as_str() != "type" && !v.is_null() && **v != Value::Bool(false))
                        .map(|(k, v)| if *v == Value::Bool(true) { k.clone() } else { format!("{k}={v}") })
                        .collect();
                    (ty, extra.join(" "))
                }
                other => (cell(other), String::new()),
            };
            vec![name.clone(), ty, extra]
        })
        .collect();
    format_table(&["ATTRIBUTE", "TYPE", "OPTIONS"], &rows)
}

async fn ns_compact(client: &Client, out: &Output, ns: &str) -> Result<(), String> {
    check_namespace(ns)?;
    let resp = client
        .send(
            reqwest::Method::POST,
            &format!("/v1/namespaces/{ns}/_admin/compact"),
            &[],
            Some(&serde_json::json!({})),
        )
        .await?;
    if out.json {
        return out.json(&resp);
    }
    let n = |k: &str| resp.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    if resp.get("performed").and_then(serde_json::Value::as_bool) == Some(true) {
        emit(&format!(
            "compacted {ns}: version {}, {} WAL object(s) folded, {} segment(s) written ({} rows), {} merged\n",
            n("version"),
            n("wal_objects_folded"),
            n("segments_written"),
            n("rows_written"),
            n("segments_merged")
        ))
    } else {
        emit(&format!("{ns}: nothing to compact (version {})\n", n("version")))
    }
}

async fn ns_delete(client: &Client, out: &Output, ns: &str, yes: bool) -> Result<(), String> {
    check_namespace(ns)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "refusing to delete namespace {ns:?} without --yes (stdin is not a terminal)"
            ));
        }
        eprint!("Delete namespace {ns:?} and all its documents? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|e| format!("reading the answer: {e}"))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err("aborted; nothing was deleted".to_string());
        }
    }
    let resp = client.send(reqwest::Method::DELETE, &format!("/v2/namespaces/{ns}"), &[], None).await?;
    if out.json {
        out.json(&resp)
    } else {
        emit(&format!("deleted namespace {ns}\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// write

struct WriteOpts {
    batch_size: u64,
    distance_metric: Option<String>,
}

/// Collects NDJSON lines into batches of documents, checking each line.
#[derive(Debug)]
struct NdjsonBatcher {
    batch_size: usize,
    line_no: u64,
    pending: Vec<Value>,
}

impl NdjsonBatcher {
    fn new(batch_size: usize) -> NdjsonBatcher {
        NdjsonBatcher { batch_size: batch_size.max(1), line_no: 0, pending: Vec::new() }
    }

    /// Takes the next line; returns a full batch when one is ready.
    fn push_line(&mut self, line: &str) -> Result<Option<Vec<Value>>, String> {
        self.line_no += 1;
        if let Some(doc) = parse_document(line).map_err(|e| format!("line {}: {e}", self.line_no))? {
            self.pending.push(doc);
        }
        if self.pending.len() >= self.batch_size {
            Ok(Some(std::mem::take(&mut self.pending)))
        } else {
            Ok(None)
        }
    }

    /// The last, partial batch (if any).
    fn finish(&mut self) -> Option<Vec<Value>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Parses one NDJSON line: `None` for a blank line, else a document object with an `id`.
fn parse_document(line: &str) -> Result<Option<Value>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = &doc else {
        return Err(format!("expected a JSON object, got {}", clip(&doc.to_string(), 40)));
    };
    match obj.get("id") {
        None => return Err("the document has no \"id\"".to_string()),
        Some(Value::Number(n)) if n.is_u64() => {}
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(other) => {
            return Err(format!(
                "\"id\" must be an unsigned integer or a non-empty string, got {}",
                clip(&other.to_string(), 40)
            ))
        }
    }
    match obj.get("vector") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {}
        Some(_) => return Err("\"vector\" must be an array of numbers (or a base64 string)".to_string()),
    }
    Ok(Some(doc))
}

/// The body of one write request.
fn write_body(rows: Vec<Value>, distance_metric: Option<&str>) -> Value {
    let mut body = Map::new();
    body.insert("upsert_rows".into(), Value::Array(rows));
    if let Some(m) = distance_metric {
        body.insert("distance_metric".into(), Value::String(m.into()));
    }
    Value::Object(body)
}

/// Progress of a write, drawn as a `\r`-updated line on stderr when it is a terminal.
struct Progress {
    enabled: bool,
    total_bytes: Option<u64>,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    fn draw(&mut self, docs: u64, batches: u64, bytes: u64, force: bool) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if !force && self.last_draw.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
            return;
        }
        self.last_draw = Some(now);
        eprint!("\r{}\x1b[K", progress_line(docs, batches, bytes, self.total_bytes, self.started.elapsed()));
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.enabled && self.last_draw.is_some() {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

fn progress_line(docs: u64, batches: u64, bytes: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = rate(docs, elapsed);
    match total {
        Some(total) if total > 0 => {
            let frac = (bytes.min(total) as f64) / (total as f64);
            let filled = (frac * 30.0).round() as usize;
            format!(
                "[{}{}] {:>3.0}%  {docs} docs  {batches} batches  {rate:.0} docs/s",
                "#".repeat(filled),
                "-".repeat(30 - filled),
                frac * 100.0
            )
        }
        _ => format!("{docs} docs  {batches} batches  {rate:.0} docs/s"),
    }
}

fn rate(docs: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        docs as f64 / secs
    } else {
        0.0
    }
}

async fn write(
    client: &Client,
    out: &Output,
    ns: &str,
    file: Option<PathBuf>,
    opts: WriteOpts,
) -> Result<(), String> {
    check_namespace(ns)?;
    let batch_size = usize::try_from(opts.batch_size).map_err(|_| "--batch-size is too large".to_string())?;
    let from_stdin = file.as_ref().is_none_or(|p| p.as_os_str() == "-");
    let (reader, source, total_bytes): (Box<dyn AsyncBufRead + Unpin>, String, Option<u64>) = if from_stdin {
        if std::io::stdin().is_terminal() {
            eprintln!("reading NDJSON documents from standard input (end with Ctrl-D)");
        }
        (Box::new(BufReader::new(tokio::io::stdin())), "standard input".to_string(), None)
    } else {
        let path = file.unwrap_or_default();
        let f =
            tokio::fs::File::open(&path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = f.metadata().await.ok().map(|m| m.len());
        (Box::new(BufReader::new(f)), path.display().to_string(), len)
    };

    let mut progress = Progress {
        enabled: std::io::stderr().is_terminal(),
        total_bytes,
        started: Instant::now(),
        last_draw: None,
    };
    let mut batcher = NdjsonBatcher::new(batch_size);
    let mut lines = reader.lines();
    let (mut docs, mut batches, mut affected, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let path = format!("/v2/namespaces/{ns}");
    let result: Result<(), String> = async {
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| format!("reading {source} at line {}: {e}", batcher.line_no + 1))?;
            let batch = match &line {
                Some(l) => {
                    bytes += l.len() as u64 + 1;
                    batcher.push_line(l)?
                }
                None => batcher.finish(),
            };
            if let Some(rows) = batch {
                let n = rows.len() as u64;
                let metric = if batches == 0 { opts.distance_metric.as_deref() } else { None };
                let body = write_body(rows, metric);
                let resp =
                    client.send(reqwest::Method::POST, &path, &[], Some(&body)).await.map_err(|e| {
                        format!("batch {} (documents {}-{}): {e}", batches + 1, docs + 1, docs + n)
                    })?;
                affected += resp.get("rows_affected").and_then(Value::as_u64).unwrap_or(n);
                docs += n;
                batches += 1;
                progress.draw(docs, batches, bytes, false);
            }
            if line.is_none() {
                return Ok(());
            }
        }
    }
    .await;
    progress.draw(docs, batches, bytes, true);
    progress.clear();
    let elapsed = progress.started.elapsed();
    if let Err(e) = result {
        return Err(if docs > 0 {
            format!("{e} ({docs} documents in {batches} batches were written before the error)")
        } else {
            format!("{e} (nothing was written)")
        });
    }
    if out.json {
        out.json(&json!({
            "namespace": ns,
            "documents": docs,
            "batches": batches,
            "rows_affected": affected,
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }))
    } else if docs == 0 {
        emit(&format!("no documents in {source}; nothing was written\n"))
    } else {
        emit(&format!(
            "wrote {docs} documents to {ns} in {batches} batch{} ({:.1} s, {:.0} docs/s)\n",
            if batches == 1 { "" } else { "es" },
            elapsed.as_secs_f64(),
            rate(docs, elapsed)
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// query

/// Builds a query body from the flags, checking that the JSON flags parse.
fn query_body(
    filters: Option<&str>,
    rank_by: Option<&str>,
    top_k: u64,
    include_attributes: Option<Value>,
) -> Result<Value, String> {
    let parse = |flag: &str, s: &str| -> Result<Value, String> {
        let v: Value = serde_json::from_str(s).map_err(|e| format!("--{flag} is not valid JSON: {e}"))?;
        if v.is_array() {
            Ok(v)
        } else {
            Err(format!("--{flag} must be a JSON array, e.g. [\"attr\",\"Eq\",1]"))
        }
    };
    let mut body = Map::new();
    body.insert("rank_by".into(), rank_by.map_or_else(|| Ok(json!(["id", "asc"])), |s| parse("rank-by", s))?);
    if let Some(f) = filters {
        body.insert("filters".into(), parse("filters", f)?);
    }
    body.insert("top_k".into(), json!(top_k));
    if let Some(inc) = include_attributes {
        body.insert("include_attributes".into(), inc);
    }
    Ok(Value::Object(body))
}

async fn query(client: &Client, out: &Output, ns: &str, body: &Value) -> Result<(), String> {
    check_namespace(ns)?;
    let resp =
        client.send(reqwest::Method::POST, &format!("/v2/namespaces/{ns}/query"), &[], Some(body)).await?;
    if out.json {
        out.json(&resp)
    } else {
        emit(&format_query_result(&resp))
    }
}

/// The human view of a query response: rows as a table (`id`, `$dist` when present, then
/// attributes in first-seen order, `vector` last), aggregations if any, and a count line.
fn format_query_result(resp: &Value) -> String {
    let rows: &[Value] = resp.get("rows").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let mut columns: Vec<String> = vec!["id".into()];
    if rows.iter().any(|r| r.get("$dist").is_some()) {
        columns.push("$dist".into());
    }
    for row in rows {
        if let Some(obj) = row.as_object() {
            for k in obj.keys() {
                if k != "vector" && !columns.iter().any(|c| c == k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    // The widest column goes last.
    if rows.iter().any(|r| r.get("vector").is_some()) {
        columns.push("vector".into());
    }
    let mut text = String::new();
    if !rows.is_empty() || resp.get("aggregations").is_none() {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| columns.iter().map(|c| r.get(c).map(cell).unwrap_or_default()).collect())
            .collect();
        let headers: Vec<&str> = columns.iter().map(String::as_str).collect();
        text.push_str(&format_table(&headers, &table));
    }
    if let Some(aggs) = resp.get("aggregations").and_then(Value::as_object) {
        let table: Vec<Vec<String>> = aggs.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect();
        text.push_str(&format_table(&["AGGREGATION", "VALUE"], &table));
    }
    if let Some(groups) = resp.get("aggregation_groups").and_then(Value::as_array) {
        for g in groups {
            let _ = writeln!(text, "{}", cell(g));
        }
    }
    let ms = resp.get("performance").and_then(|p| p.get("server_total_ms")).and_then(Value::as_f64);
    let _ = write!(text, "({} row{}", rows.len(), if rows.len() == 1 { "" } else { "s" });
    if let Some(ms) = ms {
        let _ = write!(text, ", {ms} ms on the server");
    }
    text.push_str(")\n");
    text
}

// ---------------------------------------------------------------------------------------------
// copy / branch / repair / snapshot / restore / export

impl Client {
    /// Sends a request and returns the successful response itself (for streaming bodies).
    async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).query(query);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(b);
        }
        let resp = req.send().await.map_err(|e| format!("{method} {url}: {}", describe_reqwest(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(http_error(status, &text, self.api_key.is_some()));
        }
        Ok(resp)
    }
}

fn generation_query(generation: Option<u64>) -> Vec<(&'static str, String)> {
    generation.map(|g| vec![("generation", g.to_string())]).unwrap_or_default()
}

async fn ns_copy(
    client: &Client,
    out: &Output,
    src: &str,
    dst: &str,
    deep: bool,
    generation: Option<u64>,
) -> Result<(), String> {
    check_namespace(src)?;
    check_namespace(dst)?;
    let body = json!({"source_namespace": src, "deep": deep, "generation": generation});
    let resp = client
        .send(reqwest::Method::POST, &format!("/v1/namespaces/{dst}/_admin/copy"), &[], Some(&body))
        .await?;
    if out.json {
        return out.json(&resp);
    }
    let how = if deep { "deep copy" } else { "copy-on-write copy" };
    emit(&format!(
        "{how} of {src} (version {}) created as {dst} (version {}): {} objects shared, {} copied\n",
        resp["source_version"], resp["version"], resp["objects_shared"], resp["objects_copied"]
    ))
}

async fn ns_branch(
    client: &Client,
    out: &Output,
    src: &str,
    dst: &str,
    generation: Option<u64>,
) -> Result<(), String> {
    check_namespace(src)?;
    check_namespace(dst)?;
    let body = json!({"branch_from_namespace": {"source_namespace": src, "generation": generation}});
    let resp = client.send(reqwest::Method::POST, &format!("/v2/namespaces/{dst}"), &[], Some(&body)).await?;
    if out.json {
        return out.json(&resp);
    }
    emit(&format!("branch {dst} of {src} created (version {})\n", resp["version"]))
}

async fn repair(
    client: &Client,
    out: &Output,
    sweep: bool,
    grace_secs: u64,
    retention_secs: Option<u64>,
) -> Result<(), String> {
    let body = json!({"sweep": sweep, "grace_secs": grace_secs, "manifest_retention_secs": retention_secs});
    let r = client.send(reqwest::Method::POST, "/v1/_admin/repair", &[], Some(&body)).await?;
    if out.json {
        return out.json(&r);
    }
    let n = |k: &str| r.get(k).map_or_else(|| "0".to_string(), ToString::to_string);
    let missing = r.get("missing_objects").and_then(Value::as_array).map_or(0, Vec::len);
    let mut text = format!(
        "namespaces: {}\nmanifests read: {}\nmanifests collected: {}\nrefcounts changed: {} ({} lowered, {} raised)\n",
        n("namespaces"),
        n("manifests_read"),
        n("manifests_collected"),
        n("refcounts_changed"),
        n("refcounts_lowered"),
        n("refcounts_raised"),
    );
    let _ = writeln!(text, "unreferenced objects kept (younger than {grace_secs}s): {}", n("kept_young"));
    if sweep {
        let _ = writeln!(text, "objects swept: {}", n("swept_count"));
    } else {
        text.push_str("(no sweep: pass --sweep to delete unreferenced objects)\n");
    }
    if missing > 0 {
        let _ = writeln!(text, "WARNING: {missing} referenced objects are missing from the store");
    }
    emit(&text)
}

/// Streams a response body into `w`, returning the bytes written.
async fn pump(
    mut resp: reqwest::Response,
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<u64, String> {
    use tokio::io::AsyncWriteExt;
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("the download broke off: {e}"))? {
        w.write_all(&chunk).await.map_err(|e| format!("writing: {e}"))?;
        n += chunk.len() as u64;
    }
    w.flush().await.map_err(|e| format!("writing: {e}"))?;
    Ok(n)
}

async fn snapshot(
    client: &Client,
    out: &Output,
    ns: &str,
    file: &std::path::Path,
    generation: Option<u64>,
) -> Result<(), String> {
    use crate::engine::snapshot::{verify_snapshot, AtomicFile};
    check_namespace(ns)?;
    let at = |e: std::io::Error| format!("{}: {e}", file.display());
    let resp = client
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/namespaces/{ns}/_admin/snapshot"),
            &generation_query(generation),
            None,
        )
        .await?;
    let mut f = AtomicFile::create(file).await.map_err(at)?;
    pump(resp, f.file()).await?;
    let mut check = tokio::io::BufReader::new(tokio::fs::File::open(f.temp_path()).await.map_err(at)?);
    let info =
        verify_snapshot(&mut check).await.map_err(|e| format!("the downloaded snapshot is invalid: {e}"))?;
    f.commit().await.map_err(at)?;
    let v = json!({"namespace": ns, "file": file.display().to_string(), "version": info.generation,
        "objects": info.objects, "bytes": info.bytes});
    if out.json {
        return out.json(&v);
    }
    emit(&format!(
        "saved {ns} at version {} to {} ({} objects, {} bytes)\n",
        info.generation,
        file.display(),
        info.objects,
        info.bytes
    ))
}

async fn restore(client: &Client, out: &Output, file: &std::path::Path, ns: &str) -> Result<(), String> {
    use crate::engine::snapshot::verify_snapshot;
    check_namespace(ns)?;
    let at = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut r = tokio::io::BufReader::new(tokio::fs::File::open(file).await.map_err(at)?);
    verify_snapshot(&mut r).await.map_err(|e| format!("{}: {e}", file.display()))?;
    let bytes = tokio::fs::read(file).await.map_err(at)?;
    let resp = client
        .send_raw(reqwest::Method::POST, &format!("/v1/namespaces/{ns}/_admin/restore"), &[], Some(bytes))
        .await?;
    let v: Value = resp.json().await.map_err(|e| format!("the restore response is not JSON: {e}"))?;
    if out.json {
        return out.json(&v);
    }
    emit(&format!(
        "restored {} into {ns} (version {}, {} objects)\n",
        file.display(),
        v["version"],
        v["objects"]
    ))
}

async fn export(
    client: &Client,
    ns: &str,
    file: Option<PathBuf>,
    generation: Option<u64>,
) -> Result<(), String> {
    use crate::engine::snapshot::AtomicFile;
    check_namespace(ns)?;
    let resp = client
        .send_raw(
            reqwest::Method::GET,
            &format!("/v1/namespaces/{ns}/export"),
            &generation_query(generation),
            None,
        )
        .await?;
    match file.filter(|f| f.as_os_str() != "-") {
        None => {
            let mut stdout = tokio::io::stdout();
            pump(resp, &mut stdout).await.map(|_| ())
        }
        Some(path) => {
            let at = |e: std::io::Error| format!("{}: {e}", path.display());
            let mut f = AtomicFile::create(&path).await.map_err(at)?;
            let n = pump(resp, f.file()).await?;
            f.commit().await.map_err(at)?;
            eprintln!("exported {ns} to {} ({n} bytes)", path.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_document_accepts_objects_with_ids() {
        assert_eq!(parse_document("").unwrap(), None);
        assert_eq!(parse_document("   \t").unwrap(), None);
        let doc = parse_document(r#"{"id": 7, "vector": [0.5, 1], "title": "x"}"#).unwrap().unwrap();
        assert_eq!(doc["id"], 7);
        assert!(parse_document(r#"{"id": "a-b"}"#).unwrap().is_some());
        assert!(parse_document(r#"{"id": "7b9e5c0e-0000-4000-8000-000000000000", "vector": "AACAPw=="}"#)
            .unwrap()
            .is_some());
    }

    #[test]
    fn parse_document_rejects_bad_lines() {
        for (line, want) in [
            ("{not json", "invalid JSON"),
            ("[1,2]", "expected a JSON object"),
            (r#"{"title":"x"}"#, "no \"id\""),
            (r#"{"id":-1}"#, "\"id\" must be"),
            (r#"{"id":1.5}"#, "\"id\" must be"),
            (r#"{"id":""}"#, "\"id\" must be"),
            (r#"{"id":1,"vector":["a"]}"#, "\"vector\" must be"),
        ] {
            let err = parse_document(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn batcher_splits_and_names_line_numbers() {
        let mut b = NdjsonBatcher::new(2);
        assert_eq!(b.push_line(r#"{"id":1}"#).unwrap(), None);
        assert_eq!(b.push_line("").unwrap(), None);
        let full = b.push_line(r#"{"id":2}"#).unwrap().unwrap();
        assert_eq!(full, vec![json!({"id":1}), json!({"id":2})]);
        assert_eq!(b.push_line(r#"{"id":3}"#).unwrap(), None);
        let err = b.push_line("{oops").unwrap_err();
        assert!(err.starts_with("line 5: invalid JSON"), "{err}");
        assert_eq!(b.finish(), Some(vec![json!({"id":3})]));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn batcher_exact_multiple_leaves_nothing() {
        let mut b = NdjsonBatcher::new(1);
        assert!(b.push_line(r#"{"id":1}"#).unwrap().is_some());
        assert_eq!(b.finish(), None);
        let mut zero = NdjsonBatcher::new(0); // clamped to 1
        assert!(zero.push_line(r#"{"id":1}"#).unwrap().is_some());
    }

    #[test]
    fn write_body_carries_metric_only_when_given() {
        let b = write_body(vec![json!({"id":1})], Some("cosine_distance"));
        assert_eq!(b, json!({"upsert_rows":[{"id":1}],"distance_metric":"cosine_distance"}));
        let b = write_body(vec![json!({"id":2})], None);
        assert_eq!(b, json!({"upsert_rows":[{"id":2}]}));
    }

    #[test]
    fn table_aligns_columns() {
        let t = format_table(
            &["id", "title", "n"],
            &[vec!["1".into(), "hello".into(), "3".into()], vec!["1000".into(), "x".into(), String::new()]],
        );
        assert_eq!(t, "id    title  n\n1     hello  3\n1000  x\n");
    }

    #[test]
    fn table_counts_characters_and_clips() {
        let long = "é".repeat(100);
        let t = format_table(&["a", "b"], &[vec![long, "z".into()]]);
        let first_row = t.lines().nth(1).unwrap();
        assert_eq!(first_row.chars().count(), MAX_CELL + 3);
        assert!(first_row.contains("é…  z"));
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
    }

    #[test]
    fn cells_abbreviate_vectors() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!("a\nb")), "a b");
        assert_eq!(cell(&json!([1, 2, 3, 4, 5])), "[1,2,3,4,5]");
        assert_eq!(cell(&json!([0.5, 1.5, 2.5, 3.5, 4.5])), "[0.5, 1.5, 2.5, … (5 dims)]");
        assert_eq!(cell(&json!([0.123456, -2.0])), "[0.1235, -2]");
        assert_eq!(cell(&json!([1.0, 0.0, 0.0, 0.0])), "[1, 0, 0, … (4 dims)]");
        assert_eq!(cell(&json!({"a":1})), r#"{"a":1}"#);
    }

    #[test]
    fn query_result_table() {
        let resp = json!({
            "rows": [
                {"id": 2, "$dist": 0.25, "title": "b"},
                {"id": 10, "$dist": 0.5, "year": 2020}
            ],
            "performance": {"server_total_ms": 3}
        });
        let t = format_query_result(&resp);
        assert_eq!(
            t,
            "id  $dist  title  year\n2   0.25   b\n10  0.5           2020\n(2 rows, 3 ms on the server)\n"
        );
        assert_eq!(format_query_result(&json!({"rows": []})), "id\n(0 rows)\n");
        let with_vec = format_query_result(&json!({"rows": [{"id": 1, "vector": [0.5, 0.25], "n": 1}]}));
        assert_eq!(with_vec, "id  n  vector\n1   1  [0.5, 0.25]\n(1 row)\n");
        let aggs = format_query_result(&json!({"aggregations": {"n": 3}}));
        assert_eq!(aggs, "AGGREGATION  VALUE\nn            3\n(0 rows)\n");
    }

    #[test]
    fn metadata_view() {
        let meta = json!({
            "approx_row_count": 3, "approx_logical_bytes": 120,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z",
            "index": {"status": "updating", "unindexed_rows": 3, "unindexed_bytes": 120},
            "encryption": {"mode": "default"},
            "schema": {"title": {"type": "string", "filterable": true, "full_text_search": false},
                       "vector": {"type": "[2]f32", "ann": {"distance_metric": "cosine_distance"}}}
        });
        let t = format_metadata("docs", &meta);
        assert!(t.contains("index                 updating (3 unindexed rows, 120 bytes)"), "{t}");
        assert!(t.contains("encryption            default"), "{t}");
        assert!(t.contains("title      string  filterable\n"), "{t}");
        assert!(t.contains(r#"vector     [2]f32  ann={"distance_metric":"cosine_distance"}"#), "{t}");
    }

    #[test]
    fn query_body_defaults_and_validation() {
        let b = query_body(None, None, 10, None).unwrap();
        assert_eq!(b, json!({"rank_by":["id","asc"],"top_k":10}));
        let b =
            query_body(Some(r#"["a","Eq",1]"#), Some(r#"["a","desc"]"#), 3, Some(json!(["a", "b"]))).unwrap();
        assert_eq!(
            b,
            json!({"rank_by":["a","desc"],"filters":["a","Eq",1],"top_k":3,"include_attributes":["a","b"]})
        );
        assert!(query_body(Some("{"), None, 1, None).unwrap_err().contains("--filters is not valid JSON"));
        assert!(query_body(None, Some("3"), 1, None).unwrap_err().contains("--rank-by must be a JSON array"));
    }

    #[test]
    fn error_messages_carry_status_and_daemon_message() {
        let e = http_error(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"status":"error","error":"namespace x not found"}"#,
            true,
        );
        assert_eq!(e, "HTTP 404 Not Found: namespace x not found");
        let e = http_error(reqwest::StatusCode::UNAUTHORIZED, "", false);
        assert_eq!(e, "HTTP 401 Unauthorized: (empty response) (hint: pass --api-key)");
        let e = http_error(reqwest::StatusCode::BAD_GATEWAY, "upstream down", true);
        assert_eq!(e, "HTTP 502 Bad Gateway: upstream down");
    }

    #[test]
    fn namespace_names_are_checked() {
        assert!(check_namespace("docs-1_a.b").is_ok());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("a/b").is_err());
        assert!(check_namespace(&"a".repeat(129)).is_err());
        assert!(check_namespace(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn retry_delay_prefers_server_hints() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_delay(&h, 1), Duration::from_millis(500));
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_delay(&h, 1), Duration::from_secs(2));
        h.insert("retry-after-ms", "120".parse().unwrap());
        assert_eq!(retry_delay(&h, 1), Duration::from_millis(120));
        h.insert("retry-after-ms", "99999999".parse().unwrap());
        assert_eq!(retry_delay(&h, 1), Duration::from_secs(30));
    }

    #[test]
    fn progress_line_shapes() {
        let l = progress_line(50, 1, 50, Some(100), Duration::from_secs(1));
        assert!(l.starts_with("[###############---------------]  50%  50 docs  1 batches  50 docs/s"), "{l}");
        assert_eq!(progress_line(5, 1, 5, None, Duration::ZERO), "5 docs  1 batches  0 docs/s");
    }

    #[test]
    fn client_rejects_non_http_urls() {
        assert!(Client::new("https://example.com", None).is_err());
        assert!(Client::new("nonsense", None).is_err());
        let c = Client::new("http://127.0.0.1:9/", Some("")).unwrap();
        assert_eq!(c.base, "http://127.0.0.1:9");
        assert!(c.api_key.is_none());
    }

    /// The clap definitions are consistent (debug_assert checks) and every flag has help text.
    #[test]
    fn cli_definition_is_valid_and_documented() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(subcommand)]
            cmd: AdminCommand,
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        fn walk(c: &clap::Command) {
            for a in c.get_arguments() {
                if a.get_id() != "help" && a.get_id() != "version" {
                    assert!(a.get_help().is_some(), "{}: --{} has no help", c.get_name(), a.get_id());
                }
            }
            for s in c.get_subcommands() {
                if s.get_name() != "help" {
                    assert!(s.get_about().is_some(), "{} has no about", s.get_name());
                    walk(s);
                }
            }
        }
        walk(&cmd);
        let parsed = Cli::try_parse_from(["x", "write", "ns", "-", "--batch-size", "5"]).unwrap();
        assert!(matches!(parsed.cmd, AdminCommand::Write { batch_size: 5, .. }));
        let parsed =
            Cli::try_parse_from(["x", "query", "ns", "--include-attributes", "a,b", "--top-k", "3"]).unwrap();
        match parsed.cmd {
            AdminCommand::Query { include_attributes, top_k, .. } => {
                assert_eq!(include_attributes, Some(vec!["a".to_string(), "b".to_string()]));
                assert_eq!(top_k, 3);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["x", "write", "ns", "--distance-metric", "dot"]).is_err());
        assert!(Cli::try_parse_from(["x", "ns", "list", "--page-size", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "ns", "delete", "n", "--yes"]).is_ok());
    }
}
