//! `tidepool admin query`: build a query body from flags, print the result.

#[allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// query

/// Builds a query body from the flags, checking that the JSON flags parse.
pub(super) fn query_body(
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

pub(super) async fn query(client: &Client, out: &Output, ns: &str, body: &Value) -> Result<(), String> {
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
pub(super) fn format_query_result(resp: &Value) -> String {
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
