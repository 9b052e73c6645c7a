//! TLS on the gateway's own listeners (`[listen] proxy_tls` / `admin_tls`).
//!
//! A [`ServerTls`] holds the listener's rustls configuration behind an `ArcSwap`: every new
//! handshake loads the one in force, so a reload (SIGHUP, `admin reload`, or the certificate files
//! changing on disk, polled every few seconds by `gateway::watch_listener_tls`) swaps it for new
//! handshakes only, and open connections keep theirs. A new certificate or key that does not load
//! (unreadable, not PEM, key not matching the certificate, CA not parsing) is refused with a log
//! line and an audit record (`kind = "tls"`, `event = "cert_reload_rejected"`), and the old
//! configuration stays.
//!
//! The handshake runs in the connection's own task (see `server::Connections::serve`), bounded by
//! the first-byte timeout, so a slow or silent client never holds up the acceptor. With a client CA
//! (`client_ca_file`), the verified client certificate's identity (its CN or first SAN of a kind,
//! as configured) becomes [`super::peer::Peer::tls_identity`] for every request on the connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::audit::{Audit, Record};
use crate::config::tls::{read_certs, server_config, ClientIdentity, ListenerTls, TlsFileError};

/// What identifies the files on disk: changes to any of them trigger a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

fn stamp(spec: &ListenerTls) -> Stamp {
    let files: [Option<&PathBuf>; 3] = [Some(&spec.cert_file), Some(&spec.key_file), spec.client_ca_file.as_ref()];
    Stamp(
        files
            .into_iter()
            .flatten()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len(), inode(&m)))
            })
            .collect(),
    )
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_m: &std::fs::Metadata) -> u64 {
    0
}

/// The leaf certificate of a chain and its serial number (hex), for logs and audit records.
fn leaf(chain: &[CertificateDer<'_>]) -> (Vec<u8>, String) {
    let der = chain.first().map(|c| c.to_vec()).unwrap_or_default();
    let serial = x509::serial(&der).unwrap_or_default();
    (der, serial)
}

/// How close to its end a certificate's validity gets a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// A warning when the leaf certificate of `cert_file` has expired or expires within 14 days.
pub fn expiry_warning(cert_file: &Path) -> Option<String> {
    let chain = read_certs(cert_file).ok()?;
    let end = x509::not_after(chain.first()?)?;
    let date = humantime::format_rfc3339_seconds(end);
    match end.duration_since(SystemTime::now()) {
        Err(_) => Some(format!("the certificate in {} expired on {date}: clients will refuse it", cert_file.display())),
        Ok(left) if left < EXPIRY_WARNING => Some(format!(
            "the certificate in {} expires on {date} (in {} days): replace it (no restart needed)",
            cert_file.display(),
            left.as_secs() / 86_400
        )),
        Ok(_) => None,
    }
}

/// The files as last loaded (or last tried) and the certificate in force.
#[derive(Debug)]
struct Loaded {
    stamp: Stamp,
    leaf: Vec<u8>,
    serial: String,
}

/// One listener's TLS: the configuration in force and how to reload it.
#[derive(Debug)]
pub struct ServerTls {
    listener: &'static str,
    spec: ListenerTls,
    config: ArcSwap<ServerConfig>,
    loaded: Mutex<Loaded>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The files did not change.
    Unchanged,
    /// A new configuration is in force.
    Swapped {
        /// Serial (hex) of the certificate now served.
        serial: String,
        /// Serial of the one before.
        previous: String,
    },
    /// The new files do not load; the old configuration stays.
    Rejected(String),
}

impl ServerTls {
    /// Loads the listener's configuration; `listener` is `"proxy"` or `"admin"` (for logs).
    pub fn new(listener: &'static str, spec: ListenerTls) -> Result<Arc<ServerTls>, TlsFileError> {
        let stamp = stamp(&spec);
        let cfg = server_config(&spec)?;
        let (leaf, serial) = leaf(&read_certs(&spec.cert_file)?);
        let loaded = Mutex::new(Loaded { stamp, leaf, serial });
        if let Some(w) = expiry_warning(&spec.cert_file) {
            tracing::warn!(listener, "{w}");
        }
        Ok(Arc::new(ServerTls { listener, spec, config: ArcSwap::from_pointee(cfg), loaded }))
    }

    /// The listener this is for.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Serial (hex) of the certificate in force.
    pub fn serial(&self) -> String {
        self.loaded.lock().map(|l| l.serial.clone()).unwrap_or_default()
    }

    /// Re-reads the files (only if they changed, unless `force`) and swaps the new configuration in.
    /// Blocking file reads: small files, on the control runtime.
    pub fn reload(&self, force: bool) -> Reloaded {
        let Ok(mut loaded) = self.loaded.lock() else {
            return Reloaded::Rejected("internal: reload lock poisoned".into());
        };
        let now = stamp(&self.spec);
        let same_files = now == loaded.stamp;
        if !force && same_files {
            return Reloaded::Unchanged;
        }
        // Remember what was tried, so an unchanged bad file is not retried (and audited) every poll.
        loaded.stamp = now;
        let built = server_config(&self.spec).and_then(|cfg| Ok((read_certs(&self.spec.cert_file)?, cfg)));
        match built {
            Ok((chain, cfg)) => {
                let (leaf, serial) = leaf(&chain);
                if same_files && leaf == loaded.leaf {
                    return Reloaded::Unchanged;
                }
                self.config.store(Arc::new(cfg));
                loaded.leaf = leaf;
                let previous = std::mem::replace(&mut loaded.serial, serial.clone());
                Reloaded::Swapped { serial, previous }
            }
            Err(e) => Reloaded::Rejected(e.to_string()),
        }
    }

    /// [`ServerTls::reload`], logged and audited.
    pub async fn reload_audited(&self, audit: &Audit, actor: &str, force: bool) -> Reloaded {
        let outcome = self.reload(force);
        match &outcome {
            Reloaded::Unchanged => {}
            Reloaded::Swapped { serial, previous } => {
                tracing::info!(listener = self.listener, actor, serial, previous, "TLS certificate reloaded");
                if let Some(w) = expiry_warning(&self.spec.cert_file) {
                    tracing::warn!(listener = self.listener, "{w}");
                }
                audit
                    .record(
                        Record::new("tls")
                            .with("event", "cert_reloaded")
                            .with("listener", self.listener)
                            .with("actor", actor)
                            .with("serial", serial.as_str())
                            .with("previous_serial", previous.as_str()),
                    )
                    .await;
            }
            Reloaded::Rejected(why) => {
                tracing::warn!(listener = self.listener, actor, error = %why, "TLS certificate reload refused; the old certificate stays in use");
                audit
                    .record(
                        Record::new("tls")
                            .with("event", "cert_reload_rejected")
                            .with("listener", self.listener)
                            .with("actor", actor)
                            .with("reason", why.as_str())
                            .with("serial", self.serial()),
                    )
                    .await;
            }
        }
        outcome
    }

    /// Runs the handshake on `io` (bounded by `timeout`) and takes the client's identity from its
    /// verified certificate. Fails when the handshake fails or times out, and (fail closed) when a
    /// verified client certificate lacks the configured identity field.
    pub(crate) async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<(tokio_rustls::server::TlsStream<IO>, Option<Arc<str>>), String>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        let tls = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
            Err(_) => return Err(format!("TLS handshake not done within {} ms", timeout.as_millis())),
        };
        if self.spec.client_ca_file.is_none() {
            return Ok((tls, None));
        }
        let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
            // Only reachable with `client_auth = "optional"`: no certificate, no identity.
            return Ok((tls, None));
        };
        match x509::identity(leaf, self.spec.client_identity) {
            Some(id) => Ok((tls, Some(Arc::from(id)))),
            None => Err(format!(
                "the client certificate verified but has no usable {} (client_identity); connection closed",
                self.spec.client_identity.as_str()
            )),
        }
    }
}

/// The TLS listeners of a running gateway, reloaded with the policy.
#[derive(Debug, Default)]
pub struct Listeners(Mutex<Vec<Arc<ServerTls>>>);

impl Listeners {
    /// Adds a listener's TLS (at start).
    pub fn register(&self, tls: Arc<ServerTls>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(tls);
        }
    }

    fn all(&self) -> Vec<Arc<ServerTls>> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Reloads every listener's files (SIGHUP, `admin reload`): a listener whose files are
    /// unchanged keeps its configuration; a bad new file is refused and audited.
    pub async fn reload(&self, audit: &Audit, actor: &str) {
        for t in self.all() {
            t.reload_audited(audit, actor, true).await;
        }
    }

    /// Reloads the listeners whose files changed on disk since they were last loaded.
    pub async fn reload_changed(&self, audit: &Audit) {
        for t in self.all() {
            t.reload_audited(audit, "file change", false).await;
        }
    }
}

/// Just enough DER to read a verified certificate's subject CN and subject alternative names.
///
/// rustls-webpki (already verifying the chain) exposes the DNS and URI names but neither the CN nor
/// the e-mail names; x509-parser or x509-cert would bring a dozen crates for four fields of a
/// certificate that has already been parsed and verified. Every read is bounds-checked; anything
/// unexpected yields no identity (and the connection is refused).
mod x509 {
    use super::ClientIdentity;

    /// The longest identity taken (it goes into audit records and logs).
    const MAX_IDENTITY: usize = 256;

    /// One TLV: (tag, contents, what follows).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags: none in the fields read here
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, r) = rest.split_at_checked(n)?;
            rest = r;
            bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b))
        };
        let (body, rest) = rest.split_at_checked(len)?;
        Some((tag, body, rest))
    }

    /// The TLVs of a constructed value's contents.
    fn items(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
        let mut out = Vec::new();
        while !contents.is_empty() {
            let (tag, body, rest) = tlv(contents)?;
            out.push((tag, body));
            contents = rest;
        }
        Some(out)
    }

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const OCTET_STRING: u8 = 0x04;
    /// 2.5.4.3 (commonName).
    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    /// 2.5.29.17 (subjectAltName).
    const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

    /// (subject contents, extensions contents) of a certificate.
    fn subject_and_extensions(cert: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
        let (SEQUENCE, cert, _) = tlv(cert)? else { return None };
        let (SEQUENCE, tbs, _) = tlv(cert)? else { return None };
        let mut fields = items(tbs)?;
        if fields.first()?.0 == 0xa0 {
            fields.remove(0); // [0] version
        }
        // serial, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional fields.
        let &(SEQUENCE, subject) = fields.get(4)? else { return None };
        let extensions = match fields.iter().find(|(t, _)| *t == 0xa3) {
            Some((_, ext)) => {
                let (SEQUENCE, list, _) = tlv(ext)? else { return None };
                Some(list)
            }
            None => None,
        };
        Some((subject, extensions))
    }

    fn common_name(subject: &[u8]) -> Option<String> {
        let mut found = None;
        for (tag, rdn) in items(subject)? {
            if tag != SET {
                return None;
            }
            for (tag, atv) in items(rdn)? {
                if tag != SEQUENCE {
                    return None;
                }
                let parts = items(atv)?;
                let (&(OID, oid), &(vtag, value)) = (parts.first()?, parts.get(1)?) else { return None };
                if oid != OID_CN {
                    continue;
                }
                if found.is_some() {
                    return None; // two CNs: ambiguous, no identity
                }
                found = Some(match vtag {
                    // UTF8String, PrintableString, IA5String
                    0x0c | 0x13 | 0x16 => std::str::from_utf8(value).ok()?.to_owned(),
                    // BMPString (UTF-16BE)
                    0x1e => {
                        let units: Vec<u16> = value
                            .chunks(2)
                            .map(|c| match c {
                                [a, b] => Some(u16::from_be_bytes([*a, *b])),
                                _ => None,
                            })
                            .collect::<Option<_>>()?;
                        String::from_utf16(&units).ok()?
                    }
                    _ => return None,
                });
            }
        }
        found
    }

    /// The first subject alternative name with context tag `want` ([1] e-mail, [2] DNS, [6] URI).
    fn san(extensions: &[u8], want: u8) -> Option<String> {
        for (tag, ext) in items(extensions)? {
            if tag != SEQUENCE {
                return None;
            }
            let parts = items(ext)?;
            if parts.first() != Some(&(OID, OID_SAN)) {
                continue;
            }
            let &(OCTET_STRING, value) = parts.last()? else { return None };
            let (SEQUENCE, names, _) = tlv(value)? else { return None };
            return items(names)?
                .into_iter()
                .find(|(t, _)| *t == 0x80 | want)
                .and_then(|(_, v)| std::str::from_utf8(v).ok().map(str::to_owned));
        }
        None
    }

    /// The serial number of a certificate, in hex.
    pub(super) fn serial(cert: &[u8]) -> Option<String> {
        let (SEQUENCE, cert, _) = tlv(cert)? else { return None };
        let (SEQUENCE, tbs, _) = tlv(cert)? else { return None };
        let fields = items(tbs)?;
        let &(0x02, serial) = fields.iter().find(|(t, _)| *t != 0xa0)? else { return None };
        Some(hex::encode(serial))
    }

    /// The end of a certificate's validity period.
    pub(super) fn not_after(cert: &[u8]) -> Option<std::time::SystemTime> {
        let (SEQUENCE, cert, _) = tlv(cert)? else { return None };
        let (SEQUENCE, tbs, _) = tlv(cert)? else { return None };
        let mut fields = items(tbs)?;
        if fields.first()?.0 == 0xa0 {
            fields.remove(0);
        }
        let &(SEQUENCE, validity) = fields.get(3)? else { return None };
        let times = items(validity)?;
        let &(tag, t) = times.get(1)?;
        let t = std::str::from_utf8(t).ok()?;
        // UTCTime YYMMDDHHMMSSZ (years 1950-2049) or GeneralizedTime YYYYMMDDHHMMSSZ.
        let full = match (tag, t.len()) {
            (0x17, 13) => format!("{}{t}", if t.get(..2)? < "50" { "20" } else { "19" }),
            (0x18, 15) => t.to_owned(),
            _ => return None,
        };
        let d = |r: std::ops::Range<usize>| full.get(r);
        let rfc3339 = format!("{}-{}-{}T{}:{}:{}Z", d(0..4)?, d(4..6)?, d(6..8)?, d(8..10)?, d(10..12)?, d(12..14)?);
        humantime::parse_rfc3339(&rfc3339).ok()
    }

    /// The identity `kind` of a (verified) certificate, if it has a usable one: non-empty, at most
    /// 256 bytes, no control characters.
    pub(super) fn identity(cert: &[u8], kind: ClientIdentity) -> Option<String> {
        let (subject, extensions) = subject_and_extensions(cert)?;
        let id = match kind {
            ClientIdentity::Cn => common_name(subject)?,
            ClientIdentity::SanEmail => san(extensions?, 1)?,
            ClientIdentity::SanDns => san(extensions?, 2)?,
            ClientIdentity::SanUri => san(extensions?, 6)?,
        };
        let usable = !id.is_empty() && id.len() <= MAX_IDENTITY && !id.chars().any(char::is_control);
        usable.then_some(id)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn truncated_or_garbage_input_gives_no_identity() {
            for bad in [&[][..], &[0x30], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x05, 0x30, 0x03, 0x02], &[0xff; 16]] {
                for kind in
                    [ClientIdentity::Cn, ClientIdentity::SanDns, ClientIdentity::SanUri, ClientIdentity::SanEmail]
                {
                    assert_eq!(identity(bad, kind), None);
                }
            }
        }

        #[test]
        fn long_form_lengths_are_read() {
            let mut v = vec![0x04, 0x81, 200];
            v.extend(std::iter::repeat_n(7u8, 200));
            v.push(0x05);
            let (tag, body, rest) = tlv(&v).expect("tlv");
            assert_eq!((tag, body.len(), rest), (0x04, 200, &[0x05][..]));
            assert!(tlv(&[0x04, 0x82, 0x01]).is_none(), "length bytes missing");
            assert!(tlv(&[0x04, 0x05, 1, 2]).is_none(), "contents shorter than the length");
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::config::tls::ClientAuth;

    /// Runs certs/make-pki.sh into a fresh directory (the same script the demo and tests use).
    pub(crate) fn pki() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/make-pki.sh");
        let out = std::process::Command::new("sh").arg(&script).arg(dir.path()).output().expect("run make-pki.sh");
        assert!(out.status.success(), "make-pki.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        dir
    }

    fn spec(dir: &Path, cert: &str, key: &str, ca: Option<&str>) -> ListenerTls {
        ListenerTls {
            cert_file: dir.join(cert),
            key_file: dir.join(key),
            client_ca_file: ca.map(|c| dir.join(c)),
            client_identity: ClientIdentity::Cn,
            client_auth: ClientAuth::Required,
        }
    }

    fn der(path: &Path) -> Vec<u8> {
        CertificateDer::from_pem_file(path).expect("pem").to_vec()
    }

    #[test]
    fn identities_are_read_from_the_client_certificate() {
        let d = pki();
        let cert = der(&d.path().join("client-alice.pem"));
        assert_eq!(x509::identity(&cert, ClientIdentity::Cn).as_deref(), Some("alice"));
        assert_eq!(x509::identity(&cert, ClientIdentity::SanEmail).as_deref(), Some("alice@example.test"));
        assert_eq!(x509::identity(&cert, ClientIdentity::SanDns).as_deref(), Some("alice.ops.example.test"));
        assert_eq!(x509::identity(&cert, ClientIdentity::SanUri).as_deref(), Some("spiffe://example.test/admin/alice"));
        let end = x509::not_after(&cert).expect("notAfter");
        let days = end.duration_since(SystemTime::now()).expect("valid").as_secs() / 86_400;
        assert!((28..=30).contains(&days), "make-pki.sh issues for 30 days, got {days}");
        let expired = der(&d.path().join("client-expired.pem"));
        assert!(x509::not_after(&expired).expect("notAfter") < SystemTime::now());
        assert!(expiry_warning(&d.path().join("server-expired.pem")).is_some_and(|w| w.contains("expired on 20")));
        assert_eq!(expiry_warning(&d.path().join("server.pem")), None);
        // The server certificate has DNS and IP names but no e-mail or URI.
        let server = der(&d.path().join("server.pem"));
        assert_eq!(x509::identity(&server, ClientIdentity::SanDns).as_deref(), Some("localhost"));
        assert_eq!(x509::identity(&server, ClientIdentity::SanUri), None);
        assert_eq!(x509::identity(&server, ClientIdentity::SanEmail), None);
    }

    #[test]
    fn bad_files_are_refused_with_the_field_and_file_named() {
        let d = pki();
        let p = d.path();
        assert!(server_config(&spec(p, "server.pem", "server.key", Some("ca.pem"))).is_ok());
        let e = server_config(&spec(p, "server.pem", "client-alice.key", None)).expect_err("mismatch");
        assert_eq!(e.field(), "key_file");
        assert!(e.to_string().contains("is not the private key of the certificate"), "{e}");
        let e = server_config(&spec(p, "missing.pem", "server.key", None)).expect_err("missing");
        assert_eq!(e.field(), "cert_file");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = server_config(&spec(p, "server.pem", "server.pem", None)).expect_err("no key");
        assert_eq!(e.field(), "key_file");
        assert!(e.to_string().contains("holds no private key"), "{e}");
        let e = server_config(&spec(p, "server.pem", "server.key", Some("server.key"))).expect_err("CA");
        assert_eq!(e.field(), "client_ca_file");
        // No error message quotes a key.
        let key = std::fs::read_to_string(p.join("server.key")).expect("key");
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!e.to_string().contains(&body[..20]));
    }

    #[test]
    fn reload_swaps_only_on_change_and_keeps_the_old_config_on_a_bad_file() {
        let d = pki();
        let p = d.path();
        let live = spec(p, "live.pem", "live.key", None);
        std::fs::copy(p.join("server.pem"), &live.cert_file).expect("copy");
        std::fs::copy(p.join("server.key"), &live.key_file).expect("copy");
        let tls = ServerTls::new("admin", live.clone()).expect("loads");
        let first = tls.serial();
        assert!(!first.is_empty());
        assert_eq!(tls.reload(false), Reloaded::Unchanged);
        assert_eq!(tls.reload(true), Reloaded::Unchanged, "same files, same certificate");
        let before = tls.current();
        // A broken key: refused, the old configuration stays.
        std::fs::write(&live.key_file, "not a key").expect("write");
        assert!(matches!(tls.reload(false), Reloaded::Rejected(_)));
        assert!(Arc::ptr_eq(&before, &tls.current()));
        assert_eq!(tls.reload(false), Reloaded::Unchanged, "a bad file is tried once per change");
        // The second server certificate: swapped.
        std::fs::copy(p.join("server2.pem"), &live.cert_file).expect("copy");
        std::fs::copy(p.join("server2.key"), &live.key_file).expect("copy");
        match tls.reload(false) {
            Reloaded::Swapped { serial, previous } => {
                assert_eq!(previous, first);
                assert_ne!(serial, first);
            }
            other => panic!("expected a swap, got {other:?}"),
        }
        assert!(!Arc::ptr_eq(&before, &tls.current()));
    }
}
