//! The process's TLS: rustls with ring as its crypto provider, installed as the process default
//! before any HTTP client is built (an S3 bucket over https, the admin CLI, the tests' clients).
//!
//! Invariants:
//! - Every `reqwest` client of the crate is built through [`client_builder`] (or after
//!   [`install`]): reqwest is compiled with `rustls-no-provider`, and building a client with no
//!   process default panics.
//! - Installing is idempotent and never replaces a provider already installed (an embedding
//!   program's choice stands).
//!
//! Why ring rather than rustls's default aws-lc-rs: the same TLS 1.2/1.3 suites, without a C build
//! of 45-48 s of a core in each of the test suite's three dependency builds (BENCHMARKS, "The test
//! suite's time (stop 74)").

use std::sync::Once;

/// Installs ring as the process's rustls provider, once; a provider installed before stays.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `Err` means another provider is already the default: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A `reqwest` client builder, the provider installed first.
pub fn client_builder() -> reqwest::ClientBuilder {
    install();
    reqwest::Client::builder()
}

/// A `reqwest` client with default settings (what `reqwest::Client::new()` builds).
pub fn client() -> reqwest::Client {
    client_builder().build().expect("a default HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_client_builds_with_ring_as_the_provider() {
        let c = client_builder().https_only(true).build();
        assert!(c.is_ok(), "{c:?}");
        let p = rustls::crypto::CryptoProvider::get_default().expect("a provider is installed");
        assert!(p.cipher_suites.iter().any(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
        // Idempotent.
        install();
        assert!(client_builder().build().is_ok());
    }
}
