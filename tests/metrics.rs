//! `GET /metrics` over real HTTP: the scrape parses as Prometheus text (with
//! `prometheus-parse`) and its figures move with traffic — the request
//! counter of a route pattern, the query histogram by kind, object-store
//! requests after a write, compactions, a namespace's document gauge; the
//! process RSS is positive; the endpoint is authenticated like any read and
//! names only the caller's project's namespaces.

use crate::common;

use common::{client, json_of, post, Daemon};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

/// A parsed scrape.
struct Metrics(Scrape);

impl Metrics {
    /// The samples of `name` whose labels include every `(key, value)`.
    fn find<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.0
            .samples
            .iter()
            .filter(move |s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// The sum of the plain values (counters, gauges) of matching samples.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a plain value: {other:?}"),
            })
            .sum()
    }
}

async fn scrape(c: &reqwest::Client, d: &Daemon, key: Option<&str>) -> (u16, String, String) {
    let mut req = c.get(d.at("/metrics"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype =
        resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

fn parse(text: &str) -> Metrics {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Metrics(Scrape::parse(lines).unwrap_or_else(|e| panic!("unparsable scrape ({e}):\n{text}")))
}

async fn metrics(c: &reqwest::Client, d: &Daemon, key: Option<&str>) -> Metrics {
    let (status, ctype, text) = scrape(c, d, key).await;
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("application/openmetrics-text"), "content type {ctype}");
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    parse(&text)
}

const QUERY_ROUTE: (&str, &str) = ("route", "/v2/namespaces/:ns/query");

#[tokio::test]
async fn figures_move_with_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let before = metrics(&c, &d, None).await;
    assert!(before.value("tidepool_process_resident_memory_bytes", &[]) > 0.0, "RSS is read");
    assert!(before.value("tidepool_process_open_fds", &[]) > 0.0);
    assert_eq!(before.find("tidepool_build_info", &[("version", env!("CARGO_PKG_VERSION"))]).count(), 1);
    let puts = |m: &Metrics| {
        m.value("tidepool_store_requests_total", &[("op", "put")])
            + m.value("tidepool_store_requests_total", &[("op", "put_if_absent")])
    };

    let rows: Vec<_> = (0..5).map(|i| json!({"id": i, "vector": [1.0, i as f32], "n": i})).collect();
    let w = json!({"upsert_rows": rows, "distance_metric": "cosine_distance"});
    assert_eq!(post(&c, &d.at("/v2/namespaces/traffic"), &w).await.0, 200);
    let after_write = metrics(&c, &d, None).await;
    assert!(puts(&after_write) >= puts(&before) + 2.0, "a write puts a WAL batch and a manifest");
    assert_eq!(after_write.value("tidepool_store_errors_total", &[]), 0.0);
    let ns = [("namespace", "default/default/traffic")];
    assert_eq!(after_write.value("tidepool_namespace_documents", &ns), 5.0, "the documents gauge");
    assert!(after_write.value("tidepool_namespace_logical_bytes", &ns) > 0.0);
    assert_eq!(after_write.value("tidepool_wal_backlog_batches", &ns), 1.0, "one WAL batch not compacted");

    let q = d.at("/v2/namespaces/traffic/query");
    let ann = json!({"rank_by": ["vector", "ANN", [1.0, 2.0]], "top_k": 2});
    let filtered = json!({"rank_by": ["id", "asc"], "filters": ["n", "Gt", 2]});
    for body in [&ann, &ann, &filtered] {
        assert_eq!(post(&c, &q, body).await.0, 200);
    }
    assert_eq!(post(&c, &d.at("/v2/namespaces/traffic/nope"), &ann).await.0, 404);
    let compact = c.post(d.at("/v1/namespaces/traffic/_admin/compact")).send().await.unwrap();
    assert_eq!(json_of(compact).await.0, 200);

    let after = metrics(&c, &d, None).await;
    let ok = [QUERY_ROUTE, ("method", "POST"), ("status", "200")];
    assert_eq!(after.value("tidepool_http_requests_total", &ok), 3.0, "three queries answered");
    let latency = after.find("tidepool_http_request_duration_seconds_count", &ok);
    assert_eq!(latency.map(|s| &s.value).collect::<Vec<_>>(), vec![&Value::Untyped(3.0)]);
    let buckets = after.find("tidepool_http_request_duration_seconds", &ok).next().expect("histogram");
    assert!(matches!(&buckets.value, Value::Histogram(b) if b.last().is_some_and(|b| b.count == 3.0)));
    assert_eq!(
        after.value("tidepool_http_requests_total", &[("route", "unmatched"), ("status", "404")]),
        1.0
    );
    let kind = |k: &str| after.value("tidepool_query_duration_seconds_count", &[("kind", k)]);
    assert_eq!((kind("ann"), kind("filter")), (2.0, 1.0), "query latency by kind");
    assert_eq!(after.value("tidepool_compactions_total", &[("outcome", "compacted")]), 1.0);
    assert!(after.value("tidepool_compaction_written_bytes_total", &[]) > 0.0);
    assert_eq!(after.value("tidepool_wal_backlog_batches", &ns), 0.0, "compaction folded the WAL");
    assert_eq!(after.value("tidepool_namespace_documents", &ns), 5.0);
    assert!(after.value("tidepool_cache_hits_total", &[("tier", "memory")]) >= 3.0, "loaded state served");
    assert!(after.value("tidepool_cache_bytes", &[("tier", "memory")]) > 0.0);
    assert!(after.value("tidepool_store_request_duration_seconds_count", &[("op", "put_if_absent")]) >= 2.0);
    let (_, _, text) = scrape(&c, &d, None).await;
    assert!(!text.contains("/v2/namespaces/traffic"), "route labels are patterns, never raw paths");
    dashboard_names_exported_series(&text);
}

/// Every series the Grafana dashboard queries is one the daemon exports.
fn dashboard_names_exported_series(scrape: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/grafana-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap()))
        .collect();
    assert!(exprs.len() >= 10, "the dashboard has its panels");
    for expr in exprs {
        for (i, _) in expr.match_indices("tidepool_") {
            let name: String =
                expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let exported =
                scrape.lines().any(|l| l.starts_with(&name) && l[name.len()..].starts_with(['{', ' ']));
            assert!(exported, "the dashboard queries {name}, which /metrics does not export");
        }
    }
}

#[tokio::test]
async fn the_scrape_is_authenticated_and_scoped_to_the_callers_project() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tidepool.toml");
    std::fs::write(
        &cfg,
        r#"
[[api_keys]]
key = "key-a"
org = "acme"
project = "alpha"

[[api_keys]]
key = "key-b-ro"
org = "acme"
project = "beta"
read_only = true
"#,
    )
    .unwrap();
    let d = Daemon::start(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()]);
    let c = client();
    assert_eq!(scrape(&c, &d, None).await.0, 401, "no key");
    assert_eq!(scrape(&c, &d, Some("wrong")).await.0, 401, "unknown key");
    let w = json!({"upsert_rows": [{"id": 1}, {"id": 2}]});
    let resp =
        c.post(d.at("/v2/namespaces/private-name")).bearer_auth("key-a").json(&w).send().await.unwrap();
    assert_eq!(json_of(resp).await.0, 200);

    let own = metrics(&c, &d, Some("key-a")).await;
    assert_eq!(own.value("tidepool_namespace_documents", &[("namespace", "acme/alpha/private-name")]), 2.0);
    let (status, _, text) = scrape(&c, &d, Some("key-b-ro")).await;
    assert_eq!(status, 200, "a read-only key may scrape");
    assert!(!text.contains("private-name"), "another project's namespace is never named:\n{text}");
    let other = parse(&text);
    assert_eq!(
        other.value("tidepool_namespace_documents", &[("namespace", "_other")]),
        2.0,
        "but it is counted"
    );
}
