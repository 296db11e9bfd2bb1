//! The browser console (`GET /console`): a page, a script, a style sheet and
//! an icon, compiled into the binary, that use the public HTTP API like any
//! other client.
//!
//! Invariants:
//! - The assets are `include_bytes!` constants: nothing is fetched at build
//!   or run time, so the console works on a node without an uplink, and the
//!   daemon serves exactly the bytes that were reviewed (`src/api/console/`).
//! - Serving an asset needs no key and reads no data: the page asks for a key
//!   (kept in the tab's session storage) and every call it makes goes through
//!   the same authentication, tenancy, Origin/Host rules and read-only checks
//!   as any client's (`api::auth`, `api::origin`).
//! - The page may run only its own script and style and connect only to this
//!   daemon (a `Content-Security-Policy` of `'self'`), and may not be framed.
//! - `--console false` (config `console = false`) makes every console path
//!   404, as if the route did not exist.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::error::ApiError;

/// One compiled-in file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

/// The console's files by name (`/console` is `index.html`).
const ASSETS: &[(&str, Asset)] = &[
    (
        "index.html",
        Asset { content_type: "text/html; charset=utf-8", body: include_bytes!("console/index.html") },
    ),
    (
        "console.js",
        Asset { content_type: "text/javascript; charset=utf-8", body: include_bytes!("console/console.js") },
    ),
    (
        "console.css",
        Asset { content_type: "text/css; charset=utf-8", body: include_bytes!("console/console.css") },
    ),
    ("icon.svg", Asset { content_type: "image/svg+xml", body: include_bytes!("console/icon.svg") }),
];

/// Headers that confine the page: its own script, style and API only, never
/// in a frame, no referrer leaking namespace names.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// The asset at `name` (the path after `/console/`; empty for the page).
pub fn asset(name: &str) -> Option<Asset> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// Total size of the compiled-in assets (the binary grows by this much).
pub fn assets_bytes() -> usize {
    ASSETS.iter().map(|(_, a)| a.body.len()).sum()
}

/// The response for `GET /console/{name}`, or 404 when the console is off or
/// there is no such file.
pub fn serve(enabled: bool, name: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let found = enabled.then(|| asset(name)).flatten();
    let a = found.ok_or_else(|| match enabled {
        true => ApiError::not_found(format!("no console file {name:?}")),
        false => ApiError::not_found("the console is turned off on this node (console = false)"),
    })?;
    let mut resp = Response::new(Full::new(Bytes::from_static(a.body)));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    // Revalidated on every load: a daemon upgrade must never run a stale script.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (k, v) in SECURITY_HEADERS {
        h.insert(*k, HeaderValue::from_static(v));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_found_by_name_and_small() {
        assert_eq!(asset("").unwrap().content_type, "text/html; charset=utf-8");
        assert!(asset("console.js").is_some() && asset("console.css").is_some());
        assert!(asset("../Cargo.toml").is_none() && asset("index.htm").is_none());
        // The bound: the console adds at most 1 MB to the binary.
        assert!(assets_bytes() < 1_000_000, "console assets are {} bytes", assets_bytes());
    }

    #[test]
    fn a_console_that_is_off_is_not_found() {
        assert_eq!(serve(false, "").unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(serve(true, "nope.js").unwrap_err().status, StatusCode::NOT_FOUND);
        let page = serve(true, "").unwrap();
        assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    }
}
