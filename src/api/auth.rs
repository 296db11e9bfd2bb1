//! Authentication: bearer API keys → (org, project, read-only).
//!
//! Invariants:
//! - With no keys configured (only allowed on a loopback listen address,
//!   checked at start-up) every request is `default/default`, read-write,
//!   whatever its `Authorization` header says.
//! - With keys configured, a request without a known bearer key is 401 and a
//!   read-only key on a write route is 403.
//! - The principal's org/project is the only source of the storage path, so
//!   a key can never reach another project's namespaces.
//! - Keys are compared in constant time against every configured key.
//! - A reload swaps the whole key set at once ([`Auth::replace`]): a request
//!   is checked against one set, old or new, never a mix; requests already
//!   authenticated keep running.

use std::sync::{Arc, PoisonError, RwLock};

use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::ApiKeyConfig;

/// Org and project used when no keys are configured.
pub const OPEN_ORG: &str = "default";
/// Project used when no keys are configured.
pub const OPEN_PROJECT: &str = "default";

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Org.
    pub org: String,
    /// Project.
    pub project: String,
    /// Write routes are forbidden.
    pub read_only: bool,
}

/// The configured keys (shared by clones; replaced whole on reload).
#[derive(Clone, Default)]
pub struct Auth {
    keys: Arc<RwLock<Arc<Vec<ApiKeyConfig>>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        f.debug_struct("Auth").field("keys", &self.keys().len()).finish()
    }
}

impl Auth {
    /// Build from the configuration.
    pub fn new(keys: Vec<ApiKeyConfig>) -> Self {
        Auth { keys: Arc::new(RwLock::new(Arc::new(keys))) }
    }

    /// The key set in force.
    fn keys(&self) -> Arc<Vec<ApiKeyConfig>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Swap in a new key set (a configuration reload).
    pub fn replace(&self, keys: Vec<ApiKeyConfig>) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Whether requests are accepted without keys.
    pub fn is_open(&self) -> bool {
        self.keys().is_empty()
    }

    /// Authenticate a request; `write` is whether its route mutates.
    pub fn authenticate(&self, headers: &HeaderMap, write: bool) -> Result<Principal, ApiError> {
        let keys = self.keys();
        if keys.is_empty() {
            return Ok(Principal { org: OPEN_ORG.into(), project: OPEN_PROJECT.into(), read_only: false });
        }
        let token = bearer(headers).ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing API key: send Authorization: Bearer <key>")
        })?;
        let mut found = None;
        for k in keys.iter() {
            if constant_time_eq(k.key.as_bytes(), token.as_bytes()) {
                found = Some(k);
            }
        }
        let k = found.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key"))?;
        if write && k.read_only {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "this API key is read-only"));
        }
        Ok(Principal { org: k.org.clone(), project: k.project.clone(), read_only: k.read_only })
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn keys_map_to_projects_and_read_only_is_enforced() {
        let key = |k: &str, p: &str, ro| ApiKeyConfig {
            key: k.into(),
            org: "o".into(),
            project: p.into(),
            read_only: ro,
        };
        let auth = Auth::new(vec![key("rw", "a", false), key("ro", "b", true)]);
        assert_eq!(auth.authenticate(&headers(Some("Bearer rw")), true).unwrap().project, "a");
        assert_eq!(auth.authenticate(&headers(Some("bearer  ro ")), false).unwrap().project, "b");
        assert_eq!(auth.authenticate(&headers(Some("Bearer ro")), true).unwrap_err().status, 403);
        assert_eq!(auth.authenticate(&headers(Some("Bearer nope")), false).unwrap_err().status, 401);
        assert_eq!(auth.authenticate(&headers(Some("Basic rw")), false).unwrap_err().status, 401);
        assert_eq!(auth.authenticate(&headers(None), false).unwrap_err().status, 401);
        let open = Auth::default();
        assert_eq!(open.authenticate(&headers(Some("Bearer whatever")), true).unwrap().org, OPEN_ORG);
    }
}
