//! TLS to upstreams: rustls with the platform's roots plus an optional extra CA per upstream.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

use crate::config::tls::read_ca;

/// The platform's trusted roots, loaded once.
pub(crate) fn platform_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "could not load some platform root certificates");
        }
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "platform root certificates loaded");
        store
    })
}

/// A client TLS configuration trusting the platform roots and `extra_ca`.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = platform_roots().clone();
    if let Some(p) = extra_ca {
        for c in read_ca(p)? {
            roots.add(c).map_err(|e| format!("{}: certificate rejected: {e}", p.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // No ALPN here: hyper-rustls sets it from `enable_http1()`/`enable_http2()` and panics when the
    // configuration already has protocols.
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
