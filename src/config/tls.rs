//! TLS on the listeners: `[listen] proxy_tls = { … }` and `admin_tls = { … }`.
//!
//! The policy holds paths; the files are read (and checked: readable, certificate and key match,
//! client CA parses) when the policy is compiled, so `firebreak check` and a reload report a bad
//! file at its key, and again by the listener when it (re)builds its rustls configuration (with
//! [`server_config`], from the proxy's `listen_tls`). [`read_ca`] also reads upstreams' and MCP
//! servers' extra CAs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

use super::compile::resolve_path;
use super::validate::{Problems, Seg};

/// `[listen] proxy_tls` / `admin_tls` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    /// Server certificate chain (PEM).
    pub cert_file: Option<String>,
    /// Its private key (PEM).
    pub key_file: Option<String>,
    /// CA for client certificates (mutual TLS).
    pub client_ca_file: Option<String>,
    /// `cn` | `san_dns` | `san_uri` | `san_email`.
    pub client_identity: Option<String>,
    /// `required` | `optional`.
    pub client_auth: Option<String>,
}

/// Which field of a verified client certificate is the caller's identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The subject's common name. The default: every client certificate has a subject, internal
    /// CAs and `openssl req -subj "/CN=alice"` put the person or service there, and it is what
    /// Kubernetes takes as the user name of a client certificate.
    #[default]
    Cn,
    /// The first DNS name of the subject alternative names.
    SanDns,
    /// The first URI of the subject alternative names (SPIFFE IDs: `spiffe://org/ns/svc`).
    SanUri,
    /// The first e-mail address (rfc822Name) of the subject alternative names.
    SanEmail,
}

impl ClientIdentity {
    /// The name used in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIdentity::Cn => "cn",
            ClientIdentity::SanDns => "san_dns",
            ClientIdentity::SanUri => "san_uri",
            ClientIdentity::SanEmail => "san_email",
        }
    }
}

/// Whether a listener with a client CA requires a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no connection (default).
    #[default]
    Required,
    /// A certificate, when given, must verify; without one the connection has no TLS identity (an
    /// admin token still works).
    Optional,
}

/// A listener's TLS configuration (paths resolved against the policy's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The server certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates that client certificates must chain to (mutual TLS); none: no client auth.
    pub client_ca_file: Option<PathBuf>,
    /// Which certificate field is the client's identity.
    pub client_identity: ClientIdentity,
    /// Whether a client certificate is required (with a client CA).
    pub client_auth: ClientAuth,
}

/// Compiles `[listen] <key>` (`proxy_tls` or `admin_tls`), checking the files it names.
pub(super) fn compile(
    raw: Option<&RawListenerTls>,
    key: &str,
    base: &Path,
    problems: &mut Problems,
) -> Option<ListenerTls> {
    let raw = raw?;
    let at = |field: &str| vec![Seg::Key("listen".into()), Seg::Key(key.into()), Seg::Key(field.into())];
    let mut file = |v: &Option<String>, field: &str| -> Option<PathBuf> {
        match v.as_deref() {
            None => {
                problems.add(
                    0,
                    at(field),
                    format!("[listen] {key}: `{field}` is required"),
                    Some("a PEM file; relative paths are relative to the policy file".into()),
                );
                None
            }
            Some("") => {
                problems.add(0, at(field), format!("[listen] {key}: `{field}` is empty"), None);
                None
            }
            Some(p) => Some(resolve_path(base, p)),
        }
    };
    let cert_file = file(&raw.cert_file, "cert_file");
    let key_file = file(&raw.key_file, "key_file");
    let client_ca_file = raw.client_ca_file.as_ref().and_then(|_| file(&raw.client_ca_file, "client_ca_file"));
    let client_identity = match raw.client_identity.as_deref() {
        None | Some("cn") => ClientIdentity::Cn,
        Some("san_dns") => ClientIdentity::SanDns,
        Some("san_uri") => ClientIdentity::SanUri,
        Some("san_email") => ClientIdentity::SanEmail,
        Some(other) => {
            problems.add(
                0,
                at("client_identity"),
                format!("client_identity: unknown value `{other}`"),
                Some("use \"cn\" (default), \"san_dns\", \"san_uri\" or \"san_email\"".into()),
            );
            ClientIdentity::Cn
        }
    };
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("required") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some(other) => {
            problems.add(
                0,
                at("client_auth"),
                format!("client_auth: unknown value `{other}`"),
                Some("use \"required\" (default) or \"optional\"".into()),
            );
            ClientAuth::Required
        }
    };
    if raw.client_ca_file.is_none() && (raw.client_identity.is_some() || raw.client_auth.is_some()) {
        problems.add(
            0,
            at("client_ca_file"),
            "`client_identity` and `client_auth` need `client_ca_file` (the CA that client certificates must chain to)",
            None,
        );
    }
    let spec = ListenerTls { cert_file: cert_file?, key_file: key_file?, client_ca_file, client_identity, client_auth };
    // The files themselves: readable, certificate and key match, CA parses.
    if let Err(e) = server_config(&spec) {
        problems.add(
            0,
            at(e.field()),
            format!("[listen] {key}.{}: {e}", e.field()),
            Some("see README.md, \"TLS on the listeners\"; certs/make-pki.sh makes a local CA and certificates".into()),
        );
    }
    Some(spec)
}

/// `[listen] tls_watch_ms`: how often the TLS files are checked for changes (default 2000 ms; 0
/// turns the check off, leaving SIGHUP and `admin reload`).
pub(super) fn watch_interval(raw: Option<i64>, problems: &mut Problems) -> Option<std::time::Duration> {
    match raw {
        None => Some(std::time::Duration::from_millis(DEFAULT_WATCH_MS)),
        Some(0) => None,
        Some(ms) if (100..=3_600_000).contains(&ms) => Some(std::time::Duration::from_millis(ms as u64)),
        Some(ms) => {
            problems.add(
                0,
                vec![Seg::Key("listen".into()), Seg::Key("tls_watch_ms".into())],
                format!("tls_watch_ms: {ms} is out of range"),
                Some(format!("0 (off) or 100..=3600000; the default is {DEFAULT_WATCH_MS}")),
            );
            None
        }
    }
}

/// How often the TLS files are checked for changes by default.
pub const DEFAULT_WATCH_MS: u64 = 2000;

/// Reads the certificates of a PEM file.
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
        .collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("{} holds no CERTIFICATE block", path.display())),
        Err(e) => Err(format!("{} is not valid PEM: {e}", path.display())),
    }
}

/// Why a listener's TLS files do not load. Messages name the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The certificate chain.
    #[error("{0}")]
    Cert(String),
    /// The private key.
    #[error("{0}")]
    Key(String),
    /// The key does not belong to the certificate.
    #[error("{0}")]
    Mismatch(String),
    /// The client CA.
    #[error("{0}")]
    ClientCa(String),
}

impl TlsFileError {
    /// The policy key the problem is about.
    pub fn field(&self) -> &'static str {
        match self {
            TlsFileError::Cert(_) => "cert_file",
            TlsFileError::Key(_) | TlsFileError::Mismatch(_) => "key_file",
            TlsFileError::ClientCa(_) => "client_ca_file",
        }
    }
}

/// Reads the certificate chain of a listener's `cert_file`.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsFileError::Cert(format!("cannot read certificate file {}: {e}", path.display())))?
        .collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(TlsFileError::Cert(format!("{} holds no CERTIFICATE block", path.display()))),
        Err(e) => Err(TlsFileError::Cert(format!("{} is not valid PEM: {e}", path.display()))),
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    // The error never quotes the file: it is a private key.
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::Io(io) => format!("cannot read key file {}: {io}", path.display()),
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{} holds no private key (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
                path.display()
            ),
            _ => format!("{} is not a valid PEM private key", path.display()),
        };
        TlsFileError::Key(why)
    })
}

/// Builds the rustls server configuration `spec` describes: TLS 1.2 and 1.3 only, ALPN `h2` and
/// `http/1.1`, and client certificate verification against `client_ca_file` when set.
pub fn server_config(spec: &ListenerTls) -> Result<ServerConfig, TlsFileError> {
    let certs = read_certs(&spec.cert_file)?;
    let key = read_key(&spec.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsFileError::Cert(format!("TLS setup failed: {e}")))?;
    let builder = match &spec.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_ca(ca).map_err(TlsFileError::ClientCa)? {
                roots
                    .add(c)
                    .map_err(|e| TlsFileError::ClientCa(format!("{}: CA certificate rejected: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match spec.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsFileError::ClientCa(format!("{}: unusable as a client CA: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsFileError::Mismatch(format!(
            "{} is not the private key of the certificate in {}",
            spec.key_file.display(),
            spec.cert_file.display()
        )),
        e => TlsFileError::Key(format!(
            "{} cannot be used with {}: {e}",
            spec.key_file.display(),
            spec.cert_file.display()
        )),
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
