//! `tidepool admin write`: NDJSON documents sent as `upsert_rows` batches,
//! with progress on a terminal.

#[allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// write

pub(super) struct WriteOpts {
    pub(super) batch_size: u64,
    pub(super) distance_metric: Option<String>,
}

/// Collects NDJSON lines into batches of documents, checking each line.
#[derive(Debug)]
pub(super) struct NdjsonBatcher {
    pub(super) batch_size: usize,
    pub(super) line_no: u64,
    pub(super) pending: Vec<Value>,
}

impl NdjsonBatcher {
    pub(super) fn new(batch_size: usize) -> NdjsonBatcher {
        NdjsonBatcher { batch_size: batch_size.max(1), line_no: 0, pending: Vec::new() }
    }

    /// Takes the next line; returns a full batch when one is ready.
    pub(super) fn push_line(&mut self, line: &str) -> Result<Option<Vec<Value>>, String> {
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
    pub(super) fn finish(&mut self) -> Option<Vec<Value>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Parses one NDJSON line: `None` for a blank line, else a document object with an `id`.
pub(super) fn parse_document(line: &str) -> Result<Option<Value>, String> {
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
pub(super) fn write_body(rows: Vec<Value>, distance_metric: Option<&str>) -> Value {
    let mut body = Map::new();
    body.insert("upsert_rows".into(), Value::Array(rows));
    if let Some(m) = distance_metric {
        body.insert("distance_metric".into(), Value::String(m.into()));
    }
    Value::Object(body)
}

/// Progress of a write, drawn as a `\r`-updated line on stderr when it is a terminal.
pub(super) struct Progress {
    pub(super) enabled: bool,
    pub(super) total_bytes: Option<u64>,
    pub(super) started: Instant,
    pub(super) last_draw: Option<Instant>,
}

impl Progress {
    pub(super) fn draw(&mut self, docs: u64, batches: u64, bytes: u64, force: bool) {
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

    pub(super) fn clear(&self) {
        if self.enabled && self.last_draw.is_some() {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

pub(super) fn progress_line(
    docs: u64,
    batches: u64,
    bytes: u64,
    total: Option<u64>,
    elapsed: Duration,
) -> String {
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

pub(super) fn rate(docs: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        docs as f64 / secs
    } else {
        0.0
    }
}

pub(super) async fn write(
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
