//! Browser protection for the open loopback mode. With no API keys every
//! request acts as `default/default`; a web page the user visits could then
//! send requests to `127.0.0.1:7474` (a "simple" cross-origin POST needs no
//! preflight) or, through DNS rebinding, read the answers. A bearer key is
//! never attached by a browser on its own, so with keys configured none of
//! this applies.
//!
//! Invariants (open mode only):
//! - A request carrying an `Origin` header is refused (403) unless that
//!   origin is listed in `allowed_origins` or is the daemon's own origin
//!   (`http://` + the request's `Host`, which must itself pass the Host rule
//!   below): the console served at `/console` calls the API from there, and
//!   a page of any other origin — another local port included — cannot.
//! - A request whose `Host` is not a loopback name or address (`localhost`,
//!   `*.localhost`, `127.0.0.0/8`, `[::1]`, any port) nor listed in
//!   `allowed_hosts` is refused (403): a rebound DNS name never reaches data.
//! - A mutating request with a body must say what it sends with a content
//!   type no browser form or "simple" request can produce:
//!   `application/json` (gzip content-encoding allowed) or, for a snapshot
//!   restore, `application/octet-stream`; anything else is 415.

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use hyper::{HeaderMap, StatusCode};

use super::error::ApiError;
use super::router::Route;

/// The allow-lists (config `allowed_origins`, `allowed_hosts`).
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    origins: Vec<String>,
    hosts: Vec<String>,
}

impl BrowserPolicy {
    /// A policy with these allow-lists (origins like `http://localhost:3000`,
    /// hosts like `search.internal` or `search.internal:7474`).
    pub fn new(origins: Vec<String>, hosts: Vec<String>) -> Self {
        let lower = |v: Vec<String>| v.into_iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        BrowserPolicy { origins: lower(origins), hosts: lower(hosts) }
    }

    /// Check a request of `route` (only called in open mode).
    pub fn check(&self, headers: &HeaderMap, route: &Route) -> Result<(), ApiError> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or_default().trim().to_ascii_lowercase();
            let own = !host.is_empty() && origin.strip_prefix("http://") == Some(host.as_str());
            if !own && !self.origins.contains(&origin) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-origin request from {origin:?} refused: this daemon has no API keys; \
                         add the origin to allowed_origins or configure API keys"
                    ),
                ));
            }
        }
        if !host.is_empty() && !is_loopback_host(&host) && !self.host_allowed(&host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {host:?} is not a loopback name: this daemon has no API keys; \
                     add it to allowed_hosts or configure API keys"
                ),
            ));
        }
        if route.is_write() && has_body(headers) {
            check_content_type(headers, route)?;
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        self.hosts.iter().any(|h| h == host || h == name)
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    let length =
        headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(TRANSFER_ENCODING)
}

fn check_content_type(headers: &HeaderMap, route: &Route) -> Result<(), ApiError> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let ok = match route {
        Route::Restore(_) => essence == "application/octet-stream",
        _ => essence == "application/json",
    };
    if ok {
        return Ok(());
    }
    let want =
        if matches!(route, Route::Restore(_)) { "application/octet-stream" } else { "application/json" };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "this request needs Content-Type: {want} (got {:?})",
            if ct.is_empty() { "none" } else { ct }
        ),
    ))
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn is_loopback_host(host: &str) -> bool {
    let name = strip_port(host);
    if name == "localhost" || name.ends_with(".localhost") || name == "[::1]" {
        return true;
    }
    name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins_hosts_and_content_types() {
        let p = BrowserPolicy::new(vec!["http://localhost:3000".into()], vec!["search.lan".into()]);
        let q = Route::Query("d".into());
        let w = Route::Write("d".into());
        assert!(p.check(&headers(&[("host", "127.0.0.1:7474")]), &q).is_ok());
        assert!(p.check(&headers(&[("host", "localhost")]), &q).is_ok());
        assert!(p.check(&headers(&[("host", "[::1]:7474")]), &q).is_ok());
        assert!(p.check(&headers(&[("host", "search.lan:7474")]), &q).is_ok());
        assert_eq!(p.check(&headers(&[("host", "evil.example:7474")]), &q).unwrap_err().status, 403);
        assert_eq!(p.check(&headers(&[("host", "127.0.0.1.evil.example")]), &q).unwrap_err().status, 403);
        let evil = headers(&[("host", "localhost"), ("origin", "https://evil.example")]);
        assert_eq!(p.check(&evil, &q).unwrap_err().status, 403);
        assert!(p.check(&headers(&[("host", "localhost"), ("origin", "http://localhost:3000")]), &q).is_ok());
        // The console's own origin: same host and port as the request, which is itself checked.
        let own = headers(&[("host", "127.0.0.1:7474"), ("origin", "http://127.0.0.1:7474")]);
        assert!(p.check(&own, &q).is_ok());
        let other_port = headers(&[("host", "127.0.0.1:7474"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(p.check(&other_port, &q).unwrap_err().status, 403);
        let rebound = headers(&[("host", "evil.example:7474"), ("origin", "http://evil.example:7474")]);
        assert_eq!(p.check(&rebound, &q).unwrap_err().status, 403, "a rebound name is not loopback");
        let https = headers(&[("host", "127.0.0.1:7474"), ("origin", "https://127.0.0.1:7474")]);
        assert_eq!(p.check(&https, &q).unwrap_err().status, 403, "this daemon serves plain http");
        let plain =
            headers(&[("host", "localhost"), ("content-length", "9"), ("content-type", "text/plain")]);
        assert_eq!(p.check(&plain, &w).unwrap_err().status, 415);
        let none = headers(&[("host", "localhost"), ("content-length", "9")]);
        assert_eq!(p.check(&none, &w).unwrap_err().status, 415);
        let json = headers(&[("content-length", "9"), ("content-type", "application/json; charset=utf-8")]);
        assert!(p.check(&json, &w).is_ok());
        let restore = headers(&[("content-length", "9"), ("content-type", "application/octet-stream")]);
        assert!(p.check(&restore, &Route::Restore("d".into())).is_ok());
        assert!(p.check(&headers(&[("content-length", "0")]), &w).is_ok(), "no body, nothing to check");
    }
}
