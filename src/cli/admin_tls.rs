//! The admin client's TLS: `firebreak admin --url https://… [--ca-file CA] [--client-cert C --client-key K]`
//! for an admin listener with `[listen] admin_tls` (and mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS options of `firebreak admin`.
#[derive(Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) to trust for an https:// admin URL, besides the platform's roots.
    #[arg(long, env = "FIREBREAK_ADMIN_CA", global = true)]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for an admin listener with mutual TLS.
    #[arg(long, env = "FIREBREAK_ADMIN_CLIENT_CERT", global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "FIREBREAK_ADMIN_CLIENT_KEY", global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

/// The client type the admin command uses (plain HTTP or HTTPS by the URL's scheme).
pub type AdminClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the admin client.
pub fn client(t: &TlsArgs) -> anyhow::Result<AdminClient> {
    let mut roots = crate::http::tls::platform_roots().clone();
    if let Some(ca) = &t.ca_file {
        for c in crate::config::tls::read_ca(ca).map_err(anyhow::Error::msg)? {
            roots.add(c).with_context(|| format!("{}: certificate rejected", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots);
    let cfg = match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .with_context(|| format!("{} does not go with {}", key.display(), cert.display()))?,
        _ => builder.with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no CERTIFICATE block", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    // Never quotes the file: it is a private key.
    PrivateKeyDer::from_pem_file(path)
        .map_err(|_| anyhow::anyhow!("{} holds no usable PEM private key", path.display()))
}
