//! Unit tests of the admin CLI's parsing and formatting helpers.

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
    let b = query_body(Some(r#"["a","Eq",1]"#), Some(r#"["a","desc"]"#), 3, Some(json!(["a", "b"]))).unwrap();
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
