//! `tidepool admin ns ...`: list, info, compact and delete namespaces.

#[allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// ns list / info / delete

pub(super) async fn ns_list(
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

pub(super) fn page_ids(page: &Value) -> Result<Vec<String>, String> {
    let list = page
        .get("namespaces")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("unexpected namespace list response: {}", clip(&page.to_string(), 200)))?;
    Ok(list
        .iter()
        .map(|n| n.get("id").and_then(Value::as_str).map_or_else(|| n.to_string(), str::to_string))
        .collect())
}

pub(super) fn namespace_table(ids: &[String]) -> String {
    let rows: Vec<Vec<String>> = ids.iter().map(|id| vec![id.clone()]).collect();
    let mut text = format_table(&["NAMESPACE"], &rows);
    let _ = writeln!(text, "({} namespace{})", ids.len(), if ids.len() == 1 { "" } else { "s" });
    text
}

pub(super) async fn ns_info(client: &Client, out: &Output, ns: &str) -> Result<(), String> {
    check_namespace(ns)?;
    let meta = client.send(reqwest::Method::GET, &format!("/v2/namespaces/{ns}/metadata"), &[], None).await?;
    if out.json {
        out.json(&meta)
    } else {
        emit(&format_metadata(ns, &meta))
    }
}

/// The human view of a metadata response: a key/value block, then the schema as a table.
pub(super) fn format_metadata(ns: &str, meta: &Value) -> String {
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

pub(super) fn format_schema(schema: &Map<String, Value>) -> String {
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

pub(super) async fn ns_compact(client: &Client, out: &Output, ns: &str) -> Result<(), String> {
    check_namespace(ns)?;
    // A job, polled: a large round outlasts any one request's timeout.
    let resp =
        run_job(client, &format!("/v1/namespaces/{ns}/_admin/compact"), &serde_json::json!({})).await?;
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

pub(super) async fn ns_delete(client: &Client, out: &Output, ns: &str, yes: bool) -> Result<(), String> {
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
