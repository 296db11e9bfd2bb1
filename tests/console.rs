//! The console's HTTP side over real loopback HTTP: its files are served
//! (with a confining Content-Security-Policy) without a key, `--console false`
//! removes them, the open mode accepts the daemon's own origin and still
//! refuses every other one, and `GET /v1/whoami` tells a client what its key
//! may do. The page itself is tested in a real browser (`tests/console/`).
//!
//! Invariant: every test starts its own daemon on its own data dir.

use crate::common;

use common::{client, get, json_of, Daemon};
use serde_json::json;

#[tokio::test]
async fn the_console_is_served_without_a_key_and_confined() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tidepool.toml");
    std::fs::write(&cfg, "[[api_keys]]\nkey = \"rw\"\norg = \"o\"\nproject = \"p\"\n").unwrap();
    let d = Daemon::start(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let page = c.get(d.at("/console")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/console.js"), "the page loads its script from the daemon");
    for (file, ct) in
        [("console.js", "text/javascript"), ("console.css", "text/css"), ("icon.svg", "image/svg+xml")]
    {
        let r = c.get(d.at(&format!("/console/{file}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(ct), "{file}");
    }
    let (status, body) = get(&c, &d.at("/console/../Cargo.toml")).await;
    assert_eq!(status, 404, "{body}");
    // The data behind it still needs a key.
    assert_eq!(get(&c, &d.at("/v1/namespaces")).await.0, 401);
}

#[tokio::test]
async fn console_false_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--console", "false"]);
    let (status, body) = get(&client(), &d.at("/console")).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("console = false"), "{body}");
    let (_, who) = get(&client(), &d.at("/v1/whoami")).await;
    assert_eq!(who["console"], false);
}

/// The console calls the API from the daemon's own origin; in the open mode that
/// origin is accepted and no other (another local port, a rebound name, https).
#[tokio::test]
async fn open_mode_accepts_the_own_origin_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let host = d.url.trim_start_matches("http://").to_owned();
    let write = |origin: String| {
        c.post(d.at("/v2/namespaces/web"))
            .header("origin", origin)
            .json(&json!({"upsert_rows": [{"id": 1, "a": "x"}]}))
            .send()
    };
    assert_eq!(write(d.url.clone()).await.unwrap().status(), 200, "the console's own origin");
    let port: u16 = host.rsplit_once(':').unwrap().1.parse().unwrap();
    let other = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    let (status, body) = json_of(write(other).await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = json_of(write(d.url.replace("http://", "https://")).await.unwrap()).await;
    assert_eq!(status, 403);
    let rebound = c
        .post(d.at("/v2/namespaces/web/query"))
        .header("host", format!("evil.example:{port}"))
        .header("origin", format!("http://evil.example:{port}"))
        .json(&json!({"rank_by": ["id", "asc"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403, "a rebound name is refused whatever its origin");
}

#[tokio::test]
async fn whoami_reports_the_key_and_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tidepool.toml");
    std::fs::write(
        &cfg,
        "[[api_keys]]\nkey = \"rw\"\norg = \"o\"\nproject = \"p\"\n\n\
         [[api_keys]]\nkey = \"ro\"\norg = \"o\"\nproject = \"q\"\nread_only = true\n",
    )
    .unwrap();
    let d = Daemon::start(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let (status, anon) = get(&c, &d.at("/v1/whoami")).await;
    assert_eq!(
        (status, anon["authenticated"].clone(), anon["auth"].clone()),
        (200, json!(false), json!("api_key"))
    );
    assert!(anon.get("org").is_none(), "nothing about any key without one: {anon}");
    let who = |k: &'static str| {
        let c = c.clone();
        let url = d.at("/v1/whoami");
        async move { json_of(c.get(url).bearer_auth(k).send().await.unwrap()).await }
    };
    let (_, rw) = who("rw").await;
    assert_eq!(
        (rw["project"].clone(), rw["read_only"].clone(), rw["sync"].clone()),
        (json!("p"), json!(false), json!(false))
    );
    assert_eq!(rw["models"], json!([]));
    let (_, ro) = who("ro").await;
    assert_eq!((ro["project"].clone(), ro["read_only"].clone()), (json!("q"), json!(true)));
    assert_eq!(who("wrong").await.0, 401, "a wrong key is still refused");
}

/// The namespace list with each namespace's metadata in one request (what the console's list draws).
#[tokio::test]
async fn the_list_can_carry_each_namespace_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    for (ns, rows) in [("a", 1), ("b", 3)] {
        let docs: Vec<_> = (0..rows).map(|i| json!({"id": i, "x": i})).collect();
        assert_eq!(
            common::post(&c, &d.at(&format!("/v2/namespaces/{ns}")), &json!({"upsert_rows": docs})).await.0,
            200
        );
    }
    let (status, page) = get(&c, &d.at("/v1/namespaces?include_metadata=true&page_size=1")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["namespaces"],
        json!([{"id": "a", "metadata": page["namespaces"][0]["metadata"].clone()}])
    );
    let (_, single) = get(&c, &d.at("/v1/namespaces/a/metadata")).await;
    assert_eq!(page["namespaces"][0]["metadata"], single, "the same document as GET .../metadata");
    let (_, rest) = get(
        &c,
        &d.at(&format!(
            "/v1/namespaces?include_metadata=true&cursor={}",
            page["next_cursor"].as_str().unwrap()
        )),
    )
    .await;
    assert_eq!(rest["namespaces"][0]["metadata"]["approx_row_count"], 3);
    let (_, plain) = get(&c, &d.at("/v1/namespaces")).await;
    assert_eq!(
        plain["namespaces"],
        json!([{"id": "a"}, {"id": "b"}]),
        "without the flag the listing is turbopuffer's"
    );
    let (status, body) = get(&c, &d.at("/v1/namespaces?include_metadata=yes")).await;
    assert_eq!(status, 400, "{body}");
}
