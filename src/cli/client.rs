//! The admin CLI's HTTP client: JSON over HTTP to the daemon, retries on 429
//! (nothing was applied), and one-line error messages naming the status.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Per-request timeout: generous, because a large write batch can take a while to commit.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts for a request the daemon pushed back with 429 (backpressure: nothing was applied).
pub(super) const MAX_ATTEMPTS: u32 = 8;

/// A thin JSON-over-HTTP client for the daemon.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) api_key: Option<String>,
}

impl Client {
    pub(super) fn new(url: &str, api_key: Option<&str>) -> Result<Client, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid --url {url:?}: {e}"))?;
        if parsed.scheme() != "http" {
            return Err(format!(
                "invalid --url {url:?}: only http:// is supported (the admin client talks to a local daemon)"
            ));
        }
        let http = crate::tls::client_builder()
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
    pub(super) async fn send(
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
pub(super) fn retry_delay(headers: &reqwest::header::HeaderMap, attempt: u32) -> Duration {
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

pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_connect() {
        format!("cannot connect to the daemon ({e}); is `tidepool serve` running at this --url?")
    } else if e.is_timeout() {
        format!("timed out ({e})")
    } else {
        e.to_string()
    }
}

/// The message for a non-2xx response: the status plus the daemon's error message.
pub(super) fn http_error(status: reqwest::StatusCode, body: &str, sent_key: bool) -> String {
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
pub(super) fn check_namespace(ns: &str) -> Result<(), String> {
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
// copy / branch / repair / snapshot / restore / export

impl Client {
    /// Sends a request and returns the successful response itself (for streaming bodies).
    pub(super) async fn send_raw(
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

pub(super) fn generation_query(generation: Option<u64>) -> Vec<(&'static str, String)> {
    generation.map(|g| vec![("generation", g.to_string())]).unwrap_or_default()
}
