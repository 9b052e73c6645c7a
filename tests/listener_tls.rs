//! TLS on the gateway's own listeners (`[listen] proxy_tls` / `admin_tls`): handshakes over
//! HTTP/1.1 and HTTP/2 (ALPN), refusals (TLS 1.1, plain HTTP, wrong CA, expired certificates, no
//! client certificate), the mTLS identity reaching the admin side, `firebreak check`, and
//! certificate reloads under load with no failed request.
//!
//! Every test makes a fresh PKI with `certs/make-pki.sh` (the openssl CLI) in its temp dir: no
//! committed key, nothing that expires.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_KEY: &str = "sk-fb-listener-tls-7c1e42";
const REPLY: &str = "hello over tls";

/// Runs certs/make-pki.sh into `dir/pki`.
fn make_pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/make-pki.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .arg(&pki)
        .output()
        .expect("certs/make-pki.sh runs (it needs the openssl CLI)");
    assert!(out.status.success(), "make-pki.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    pki
}

/// A policy with a scripted upstream, one key, and `listen` as the `[listen]` table's body.
fn policy(listen: &str) -> String {
    format!(
        r#"
[listen]
{listen}

[upstreams.script]
kind = "scripted"
[[upstreams.script.replies]]
text = "{REPLY}"

[[keys]]
id = "tls-client"
sha256 = "{hash}"
tenant = "acme"
user = "tess"
role = "developer"

[roles.developer]

# The reload tests make thousands of requests a minute.
[levels.normal]
requests_per_minute = 1000000
"#,
        hash = sha256_hex(CLIENT_KEY)
    )
}

/// Makes a PKI in a temp dir, writes the policy (`listen` may name `pki/...` files) and starts it.
fn start(listen: &str) -> (Gateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_pki(tmp.path());
    std::fs::write(tmp.path().join("policy.toml"), policy(listen)).expect("write policy");
    let g = Gateway::spawn(tmp.path());
    (g, tmp)
}

const SERVER: &str = r#"cert_file = "pki/server.pem", key_file = "pki/server.key""#;

fn both_tls() -> String {
    format!("proxy_tls = {{ {SERVER} }}\nadmin_tls = {{ {SERVER}, client_ca_file = \"pki/ca.pem\" }}\n")
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path).expect("pem file").collect::<Result<_, _>>().expect("pem parses")
}

/// A client configuration trusting `ca`, presenting `identity` (cert, key) if given, offering `alpn`.
fn client(ca: &Path, identity: Option<(&Path, &Path)>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca) {
        roots.add(c).expect("CA added");
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(pem_certs(cert), PrivateKeyDer::from_pem_file(key).expect("client key"))
            .expect("client cert"),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An open TLS connection speaking the protocol ALPN chose.
struct Conn {
    sender: Sender,
    authority: String,
    /// The server's leaf certificate.
    leaf: Vec<u8>,
    /// The ALPN protocol negotiated.
    alpn: Option<Vec<u8>>,
}

async fn connect(authority: &str, cfg: Arc<rustls::ClientConfig>) -> Result<Conn, String> {
    let tcp = TcpStream::connect(authority).await.map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let tls = tokio::time::timeout(Duration::from_secs(10), tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let sender = if alpn.as_deref() == Some(b"h2") {
        let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        Sender::H2(s)
    } else {
        let (s, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        Sender::H1(s)
    };
    Ok(Conn { sender, authority: authority.to_owned(), leaf, alpn })
}

impl Conn {
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, String), String> {
        let uri = match self.sender {
            Sender::H1(_) => path.to_owned(),
            Sender::H2(_) => format!("https://{}{path}", self.authority),
        };
        let mut req = http::Request::builder().method(method).uri(uri).header("content-type", "application/json");
        // No token: the client certificate alone identifies the caller ([[admins]] cert_identity).
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if let Sender::H1(_) = self.sender {
            req = req.header("host", &self.authority);
        }
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| format!("not ready: {e}"))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A chat completion through the proxy listener; Ok only for a 200 with the scripted reply.
    async fn chat(&mut self) -> Result<(), String> {
        let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
        match self.send("POST", "/v1/chat/completions", CLIENT_KEY, Some(body)).await? {
            (200, text) if text.contains(REPLY) => Ok(()),
            (status, text) => Err(format!("chat: {status} {text}")),
        }
    }

    /// The admin state through the admin listener; Ok only for a 200.
    async fn state(&mut self) -> Result<(), String> {
        match self.send("GET", "/admin/v1/state", ADMIN_TOKEN, None).await? {
            (200, _) => Ok(()),
            (status, text) => Err(format!("state: {status} {text}")),
        }
    }
}

/// Connects and makes one admin request: the whole exchange must work.
async fn admin_exchange(authority: &str, cfg: Arc<rustls::ClientConfig>) -> Result<(), String> {
    connect(authority, cfg).await?.state().await
}

fn audit_records(g: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(g.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn tls_events(g: &Gateway) -> Vec<(String, String)> {
    audit_records(g)
        .iter()
        .filter(|r| r["kind"] == "tls")
        .map(|r| (r["event"].as_str().unwrap_or("").to_owned(), r["actor"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2_over_tls_on_both_listeners() {
    let (g, tmp) = start(&both_tls());
    let pki = tmp.path().join("pki");
    let (proxy, admin) = (addr(&g.proxy), addr(&g.admin));
    let alice = Some((pki.join("client-alice.pem"), pki.join("client-alice.key")));
    let alice = alice.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    for (proto, want) in [("http/1.1", b"http/1.1".as_slice()), ("h2", b"h2".as_slice())] {
        let mut c = connect(&proxy, client(&pki.join("ca.pem"), None, &[proto])).await.expect("proxy handshake");
        assert_eq!(c.alpn.as_deref(), Some(want), "ALPN on the proxy listener");
        assert!(matches!((&c.sender, proto), (Sender::H2(_), "h2") | (Sender::H1(_), "http/1.1")));
        c.chat().await.expect("chat completion over TLS");
        c.chat().await.expect("a second request on the same connection");
        assert_eq!(c.leaf, pem_certs(&pki.join("server.pem"))[0].to_vec(), "the configured certificate is served");

        let mut a = connect(&admin, client(&pki.join("ca.pem"), alice, &[proto])).await.expect("admin handshake");
        assert_eq!(a.alpn.as_deref(), Some(want), "ALPN on the admin listener");
        a.state().await.expect("admin state over mTLS");
    }
    // No ALPN offered at all: HTTP/1.1.
    let mut c = connect(&proxy, client(&pki.join("ca.pem"), None, &[])).await.expect("handshake without ALPN");
    assert_eq!(c.alpn, None);
    c.chat().await.expect("chat without ALPN");
}

/// Sends `bytes` on a fresh TCP connection and returns what comes back before the server closes.
async fn raw_exchange(authority: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(authority).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server neither answered nor closed within 10 s (got {out:?})");
    out
}

/// Sends `bytes` on a fresh TCP connection and returns the first bytes that come back.
async fn raw_exchange_first(authority: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(authority).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let mut out = vec![0u8; 6];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut out)).await;
    assert!(matches!(read, Ok(Ok(_))), "no answer within 10 s: {read:?}");
    out
}

/// A ClientHello of `version` (minor: 2 = TLS 1.1, 3 = TLS 1.2) without a supported_versions
/// extension, with what a TLS 1.2 server needs to answer (groups, point formats, signature schemes).
fn client_hello(minor: u8) -> Vec<u8> {
    let mut body = vec![0x03, minor]; // client_version
    body.extend([0x5a; 32]); // random
    body.push(0); // session id
                  // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, and the
                  // TLS 1.1 suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA.
    body.extend([0x00, 0x06, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13]);
    body.extend([0x01, 0x00]); // null compression
    let ext: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms: ecdsa_secp256r1_sha256
    ];
    body.extend([0x00, ext.len() as u8]);
    body.extend(ext);
    let mut hs = vec![0x01, 0, 0, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x02, 0, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tls_plain_http_and_silent_clients_get_no_service() {
    let (g, tmp) = start(&both_tls());
    let pki = tmp.path().join("pki");
    for authority in [addr(&g.proxy), addr(&g.admin)] {
        // TLS 1.1: a fatal alert, then the close.
        let out = raw_exchange(&authority, &client_hello(2)).await;
        assert!(out.len() >= 7, "expected an alert record, got {out:?}");
        assert_eq!((out[0], out[5]), (0x15, 2), "a fatal alert, got {out:?}");
        // The same hello as TLS 1.2 gets a ServerHello: it was the version that was refused.
        let out = raw_exchange_first(&authority, &client_hello(3)).await;
        assert_eq!((out.first(), out.get(5)), (Some(&0x16), Some(&0x02)), "a ServerHello, got {out:?}");
        // Plain HTTP to a TLS port: never an HTTP response.
        let out = raw_exchange(&authority, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(!out.starts_with(b"HTTP/"), "plain HTTP was answered: {:?}", String::from_utf8_lossy(&out));
    }
    // A client that connects and says nothing does not hold up the acceptor: the next client is
    // served at once (the handshake runs in the connection's own task).
    let _silent: Vec<TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(TcpStream::connect(addr(&g.proxy)).await.expect("connect"));
        }
        v
    };
    let served = tokio::time::timeout(Duration::from_secs(5), async {
        connect(&addr(&g.proxy), client(&pki.join("ca.pem"), None, &["http/1.1"])).await?.chat().await
    })
    .await;
    assert!(matches!(served, Ok(Ok(()))), "a client behind silent ones was not served: {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_wrong_ca_and_an_expired_server_certificate() {
    let expired = r#"cert_file = "pki/server-expired.pem", key_file = "pki/server-expired.key""#;
    let (g, tmp) = start(&format!("proxy_tls = {{ {SERVER} }}\nadmin_tls = {{ {expired} }}\n"));
    let pki = tmp.path().join("pki");
    // A client trusting another CA.
    let e = connect(&addr(&g.proxy), client(&pki.join("other-ca.pem"), None, &["http/1.1"])).await.err();
    assert!(e.as_deref().is_some_and(|e| e.contains("UnknownIssuer")), "wrong CA: {e:?}");
    // The right CA, but the certificate served has expired.
    let e = connect(&addr(&g.admin), client(&pki.join("ca.pem"), None, &["http/1.1"])).await.err();
    assert!(e.as_deref().is_some_and(|e| e.contains("certificate expired")), "expired server certificate: {e:?}");
    // The good listener still works with the right CA.
    connect(&addr(&g.proxy), client(&pki.join("ca.pem"), None, &["h2"]))
        .await
        .expect("handshake")
        .chat()
        .await
        .expect("chat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_refuses_clients_without_a_valid_certificate() {
    let (g, tmp) = start(&both_tls());
    let pki = tmp.path().join("pki");
    let ca = pki.join("ca.pem");
    let admin = addr(&g.admin);
    let with = |name: &str| {
        client(&ca, Some((&pki.join(format!("{name}.pem")), &pki.join(format!("{name}.key")))), &["http/1.1"])
    };
    admin_exchange(&admin, with("client-alice")).await.expect("a valid client certificate is accepted");
    for (who, cfg) in [
        ("no client certificate", client(&ca, None, &["http/1.1"])),
        ("a certificate from another CA", with("client-wrong-ca")),
        ("an expired certificate", with("client-expired")),
    ] {
        // With TLS 1.3 the client may finish its side of the handshake before the server refuses,
        // so the refusal shows at the handshake or at the first request: either way, no answer.
        let r = admin_exchange(&admin, cfg.clone()).await;
        assert!(r.is_err(), "{who} was served");
        // The same client with HTTP/2: no answer either.
        let mut h2 = (*cfg).clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        assert!(admin_exchange(&admin, Arc::new(h2)).await.is_err(), "{who} was served over h2");
    }
    // The proxy listener has no client CA: no certificate needed there.
    connect(&addr(&g.proxy), client(&ca, None, &["http/1.1"])).await.expect("handshake").chat().await.expect("chat");
    // And the refusals did not harm the listener.
    admin_exchange(&admin, with("client-bob")).await.expect("still serving valid clients");
    let log = g.stderr();
    assert!(log.contains("TLS connection refused"), "refusals are logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtls_identity_reaches_the_admin_side() {
    for (kind, want_alice) in [("cn", "alice"), ("san_uri", "spiffe://example.test/admin/alice")] {
        let listen =
            format!("admin_tls = {{ {SERVER}, client_ca_file = \"pki/ca.pem\", client_identity = \"{kind}\" }}\n");
        let (g, tmp) = start(&listen);
        let pki = tmp.path().join("pki");
        let alice =
            client(&pki.join("ca.pem"), Some((&pki.join("client-alice.pem"), &pki.join("client-alice.key"))), &["h2"]);
        let mut c = connect(&addr(&g.admin), alice).await.expect("handshake");
        let batch = json!({"actions": [{"action": "safe_mode", "enabled": true}], "reason": "tls test", "actor": "someone-else"});
        let (status, body) = c.send("POST", "/admin/v1/switches", ADMIN_TOKEN, Some(batch)).await.expect("switch");
        assert_eq!(status, 200, "{body}");
        let switch = audit_records(&g).into_iter().rev().find(|r| r["kind"] == "switch").expect("a switch record");
        assert_eq!(switch["tls_identity"], want_alice, "client_identity = {kind}: {switch}");
    }
    // Plain HTTP admin listener: no identity field at all.
    let (g, _tmp) = start("");
    let (status, _) =
        g.switches(json!({"actions": [{"action": "safe_mode", "enabled": true}], "reason": "plain"})).await;
    assert_eq!(status, 200);
    let switch = audit_records(&g).into_iter().rev().find(|r| r["kind"] == "switch").expect("a switch record");
    assert!(switch.get("tls_identity").is_none(), "{switch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_named_in_admins_is_an_identity_with_its_role() {
    // `policy` puts this text in [listen]; the [[admins]] tables after it are top-level.
    let listen = format!(
        "admin_tls = {{ {SERVER}, client_ca_file = \"pki/ca.pem\" }}\n\n\
         [[admins]]\nid = \"alice\"\ncert_identity = \"alice\"\nrole = \"viewer\"\n\n\
         [[admins]]\nid = \"bob\"\ncert_identity = \"bob\"\nrole = \"responder\"\n"
    );
    let (g, tmp) = start(&listen);
    let pki = tmp.path().join("pki");
    let as_client = |name: &str| {
        client(
            &pki.join("ca.pem"),
            Some((&pki.join(format!("client-{name}.pem")), &pki.join(format!("client-{name}.key")))),
            &["h2"],
        )
    };
    let batch =
        json!({"actions": [{"action": "safe_mode", "enabled": true}], "reason": "mtls identity", "actor": "eve"});

    let mut alice = connect(&addr(&g.admin), as_client("alice")).await.expect("handshake");
    let (status, body) = alice.send("GET", "/admin/v1/whoami", "", None).await.expect("whoami");
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).ok()),
        (200, Some(json!({"id": "alice", "role": "viewer"})))
    );
    let (status, body) = alice.send("POST", "/admin/v1/switches", "", Some(batch.clone())).await.expect("switch");
    assert_eq!(status, 403, "a viewer's certificate cannot flip switches: {body}");
    assert!(body.contains("needs role responder; you are viewer"), "{body}");
    // A token that is sent must be right, whatever the certificate.
    let (status, _) = alice.send("GET", "/admin/v1/state", "not-the-token", None).await.expect("state");
    assert_eq!(status, 401);
    // Nine more wrong tokens reach the default limit (10): this address's tokens are refused
    // unchecked from then on, but a verified admin certificate still gets in.
    for _ in 0..9 {
        assert_eq!(alice.send("GET", "/admin/v1/state", "not-the-token", None).await.expect("state").0, 401);
    }
    let (status, body) = alice.send("GET", "/admin/v1/state", "not-the-token", None).await.expect("state");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("auth_locked_out"), "{body}");

    let mut bob = connect(&addr(&g.admin), as_client("bob")).await.expect("handshake");
    let (status, body) = bob.send("POST", "/admin/v1/switches", "", Some(batch)).await.expect("switch");
    assert_eq!(status, 200, "{body}");
    let switch = audit_records(&g).into_iter().rev().find(|r| r["kind"] == "switch").expect("a switch record");
    assert_eq!(
        (&switch["actor"], &switch["tls_identity"], &switch["on_behalf_of"]),
        (&json!("bob"), &json!("bob"), &json!("eve"))
    );
}

/// Forensics (README "Forensics"): a request over mutual TLS on the proxy listener names its
/// client certificate's identity, and its peer address, in its audit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mtls_identity_reaches_the_request_record() {
    let (g, tmp) =
        start(&format!("proxy_tls = {{ {SERVER}, client_ca_file = \"pki/ca.pem\", client_identity = \"cn\" }}\n"));
    let pki = tmp.path().join("pki");
    let alice =
        client(&pki.join("ca.pem"), Some((&pki.join("client-alice.pem"), &pki.join("client-alice.key"))), &["h2"]);
    let mut c = connect(&addr(&g.proxy), alice).await.expect("handshake");
    c.chat().await.expect("chat over mTLS");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        if let Some(r) = audit_records(&g).into_iter().find(|r| r["kind"] == "request") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no request record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record["tls_identity"], "alice", "{record}");
    assert!(record["client_addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{record}");
}

#[test]
fn check_reports_bad_tls_files_at_their_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_pki(tmp.path());
    let check = |listen: &str| {
        let p = tmp.path().join("policy.toml");
        std::fs::write(&p, policy(listen)).expect("write");
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_firebreak")).arg("check").arg(&p).output().expect("check");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = check(&both_tls());
    assert!(ok && !out.contains("warning: [listen]"), "{out}");
    // An expired certificate is a warning (a reload can replace it), not an error.
    let (ok, out) =
        check(r#"proxy_tls = { cert_file = "pki/server-expired.pem", key_file = "pki/server-expired.key" }"#);
    assert!(
        ok && out.contains("warning: [listen] proxy_tls: the certificate in") && out.contains("expired on"),
        "{out}"
    );
    let (ok, out) = check(r#"proxy_tls = { cert_file = "pki/server.pem", key_file = "pki/client-alice.key" }"#);
    assert!(
        !ok && out.contains("[listen] proxy_tls.key_file")
            && out.contains("client-alice.key is not the private key of the certificate in"),
        "{out}"
    );
    let (ok, out) = check(r#"admin_tls = { cert_file = "pki/nope.pem", key_file = "pki/server.key" }"#);
    assert!(
        !ok && out.contains("admin_tls.cert_file: cannot read certificate file") && out.contains("nope.pem"),
        "{out}"
    );
    let (ok, out) = check(&format!(r#"admin_tls = {{ {SERVER}, client_ca_file = "pki/server.key" }}"#));
    assert!(
        !ok && out.contains("admin_tls.client_ca_file") && out.contains("server.key holds no CERTIFICATE block"),
        "{out}"
    );
    let (ok, out) =
        check(&format!(r#"admin_tls = {{ {SERVER}, client_ca_file = "pki/ca.pem", client_identity = "upn" }}"#));
    assert!(!ok && out.contains("client_identity: unknown value `upn`") && out.contains("san_email"), "{out}");
    let (ok, out) = check(r#"proxy_tls = { cert_file = "pki/server.pem" }"#);
    assert!(!ok && out.contains("`key_file` is required"), "{out}");
    // A key never appears in the output.
    let key = std::fs::read_to_string(tmp.path().join("pki/client-alice.key")).expect("key");
    let line = key.lines().nth(1).expect("a base64 line");
    let (_, out) = check(r#"proxy_tls = { cert_file = "pki/server.pem", key_file = "pki/client-alice.key" }"#);
    assert!(!out.contains(line));
}

/// Requests running during a reload: keep-alive connections (HTTP/1.1 to the proxy, HTTP/2 to the
/// admin listener) and a fresh connection per request; every failure is kept.
struct Load {
    stop: AtomicBool,
    keepalive_ok: AtomicUsize,
    fresh_ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn start(
        proxy: String,
        admin: String,
        proxy_cfg: Arc<rustls::ClientConfig>,
        admin_cfg: Arc<rustls::ClientConfig>,
    ) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Load {
            stop: AtomicBool::new(false),
            keepalive_ok: AtomicUsize::new(0),
            fresh_ok: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let fail = |l: &Load, e: String| l.failures.lock().expect("lock").push(e);
        let mut tasks = Vec::new();
        {
            let (l, proxy, cfg) = (load.clone(), proxy.clone(), proxy_cfg.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = match connect(&proxy, cfg).await {
                    Ok(c) => c,
                    Err(e) => return fail(&l, format!("keep-alive h1 connect: {e}")),
                };
                while !l.stop.load(Ordering::Relaxed) {
                    match c.chat().await {
                        Ok(()) => l.keepalive_ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => return fail(&l, format!("keep-alive h1: {e}")),
                    };
                }
            }));
        }
        {
            let (l, admin, mut cfg) = (load.clone(), admin.clone(), (*admin_cfg).clone());
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            tasks.push(tokio::spawn(async move {
                let mut c = match connect(&admin, Arc::new(cfg)).await {
                    Ok(c) => c,
                    Err(e) => return fail(&l, format!("keep-alive h2 connect: {e}")),
                };
                while !l.stop.load(Ordering::Relaxed) {
                    match c.state().await {
                        Ok(()) => l.keepalive_ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => return fail(&l, format!("keep-alive h2: {e}")),
                    };
                }
            }));
        }
        for (authority, cfg, is_proxy) in [(proxy, proxy_cfg, true), (admin, admin_cfg, false)] {
            let l = load.clone();
            tasks.push(tokio::spawn(async move {
                while !l.stop.load(Ordering::Relaxed) {
                    let r = match connect(&authority, cfg.clone()).await {
                        Ok(mut c) if is_proxy => c.chat().await,
                        Ok(mut c) => c.state().await,
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(()) => l.fresh_ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => return fail(&l, format!("fresh connection to {authority}: {e}")),
                    };
                }
            }));
        }
        (load, tasks)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("lock").clone()
    }

    /// Waits until both kinds of requests made `more` more successes (the load is really running).
    async fn progress(&self, more: usize) {
        let (k, f) = (self.keepalive_ok.load(Ordering::Relaxed), self.fresh_ok.load(Ordering::Relaxed));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.keepalive_ok.load(Ordering::Relaxed) < k + more || self.fresh_ok.load(Ordering::Relaxed) < f + more {
            assert!(self.failures().is_empty(), "requests failed: {:?}", self.failures());
            assert!(Instant::now() < deadline, "the load made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self: Arc<Self>, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("load task");
        }
        assert!(self.failures().is_empty(), "requests failed during the reload: {:?}", self.failures());
    }
}

/// Replaces `dst` with `src` atomically (write beside, rename over).
fn replace(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dst).expect("rename");
}

/// The leaf certificate a fresh handshake gets.
async fn served_leaf(authority: &str, cfg: Arc<rustls::ClientConfig>) -> Vec<u8> {
    connect(authority, cfg).await.expect("handshake").leaf
}

/// Waits (bounded) until fresh handshakes on `authority` get `want`.
async fn wait_for_leaf(authority: &str, cfg: Arc<rustls::ClientConfig>, want: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    while served_leaf(authority, cfg.clone()).await != want {
        assert!(Instant::now() < deadline, "new handshakes on {authority} still get the old certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway serving `live.pem`/`live.key` (copies of server.pem) on both listeners.
fn start_live(extra: &str) -> (Gateway, tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(tmp.path());
    std::fs::copy(pki.join("server.pem"), pki.join("live.pem")).expect("copy");
    std::fs::copy(pki.join("server.key"), pki.join("live.key")).expect("copy");
    let live = r#"cert_file = "pki/live.pem", key_file = "pki/live.key""#;
    let listen =
        format!("proxy_tls = {{ {live} }}\nadmin_tls = {{ {live}, client_ca_file = \"pki/ca.pem\" }}\n{extra}");
    std::fs::write(tmp.path().join("policy.toml"), policy(&listen)).expect("write policy");
    let g = Gateway::spawn(tmp.path());
    (g, tmp, pki)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_admin_reload_swap_the_certificate_under_load_with_no_failed_request() {
    // Watching off: only SIGHUP and `admin reload` reload, so each step proves its own trigger.
    let (g, _tmp, pki) = start_live("tls_watch_ms = 0");
    let (proxy, admin) = (addr(&g.proxy), addr(&g.admin));
    let ca = pki.join("ca.pem");
    let proxy_cfg = client(&ca, None, &["http/1.1"]);
    let admin_cfg = client(&ca, Some((&pki.join("client-alice.pem"), &pki.join("client-alice.key"))), &["http/1.1"]);
    let first = pem_certs(&pki.join("server.pem"))[0].to_vec();
    let second = pem_certs(&pki.join("server2.pem"))[0].to_vec();
    assert_eq!(served_leaf(&proxy, proxy_cfg.clone()).await, first);

    let (load, tasks) = Load::start(proxy.clone(), admin.clone(), proxy_cfg.clone(), admin_cfg.clone());
    load.progress(5).await;

    // New files, no signal: nothing changes.
    replace(&pki.join("server2.pem"), &pki.join("live.pem"));
    replace(&pki.join("server2.key"), &pki.join("live.key"));
    load.progress(3).await;
    assert_eq!(served_leaf(&proxy, proxy_cfg.clone()).await, first, "no reload without a trigger");

    // SIGHUP: new handshakes on both listeners get the new certificate; open connections go on.
    let hup = std::process::Command::new("kill").args(["-HUP", &g.pid().to_string()]).status().expect("kill");
    assert!(hup.success());
    wait_for_leaf(&proxy, proxy_cfg.clone(), &second, Duration::from_secs(15)).await;
    wait_for_leaf(&admin, admin_cfg.clone(), &second, Duration::from_secs(15)).await;
    load.progress(10).await;

    // A broken key, then `admin reload`: refused, audited, the second certificate stays.
    std::fs::write(pki.join("bad.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .expect("write");
    replace(&pki.join("bad.key"), &pki.join("live.key"));
    let mut a = connect(&admin, admin_cfg.clone()).await.expect("admin connection");
    let (status, body) = a.send("POST", "/admin/v1/policy/reload", ADMIN_TOKEN, Some(json!({}))).await.expect("reload");
    assert_eq!(status, 422, "the policy naming a bad key is refused: {body}");
    assert!(body.contains("proxy_tls.key_file") && body.contains("live.key cannot be used with"), "{body}");
    load.progress(5).await;
    assert_eq!(served_leaf(&proxy, proxy_cfg.clone()).await, second, "the old certificate stays after a bad reload");

    // The first certificate back, and `admin reload`.
    replace(&pki.join("server.key"), &pki.join("live.key"));
    replace(&pki.join("server.pem"), &pki.join("live.pem"));
    let (status, body) = a.send("POST", "/admin/v1/policy/reload", ADMIN_TOKEN, Some(json!({}))).await.expect("reload");
    assert_eq!(status, 200, "{body}");
    wait_for_leaf(&proxy, proxy_cfg.clone(), &first, Duration::from_secs(15)).await;
    load.progress(10).await;
    load.clone().finish(tasks).await;
    assert!(load.keepalive_ok.load(Ordering::Relaxed) > 30 && load.fresh_ok.load(Ordering::Relaxed) > 30);

    let events = tls_events(&g);
    let has = |event: &str, actor: &str| events.iter().any(|(e, a)| e == event && a == actor);
    assert!(has("cert_reloaded", "SIGHUP"), "{events:?}");
    // An admin-API reload is attributed to the authenticated identity (the legacy token's is `admin`).
    assert!(has("cert_reload_rejected", "admin"), "{events:?}");
    assert!(has("cert_reloaded", "admin"), "{events:?}");
    let rejected = audit_records(&g).into_iter().find(|r| r["event"] == "cert_reload_rejected").expect("record");
    assert!(rejected["reason"].as_str().is_some_and(|r| r.contains("live.key")), "{rejected}");
    assert!(!rejected.to_string().contains("AAAA"), "a key's content is never audited: {rejected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_file_replaced_without_a_signal_is_picked_up_under_load() {
    let (g, _tmp, pki) = start_live("tls_watch_ms = 200");
    let (proxy, admin) = (addr(&g.proxy), addr(&g.admin));
    let ca = pki.join("ca.pem");
    let proxy_cfg = client(&ca, None, &["http/1.1"]);
    let admin_cfg = client(&ca, Some((&pki.join("client-bob.pem"), &pki.join("client-bob.key"))), &["http/1.1"]);
    let second = pem_certs(&pki.join("server2.pem"))[0].to_vec();

    let (load, tasks) = Load::start(proxy.clone(), admin.clone(), proxy_cfg.clone(), admin_cfg.clone());
    load.progress(5).await;
    // The key first: until the certificate follows, the pair does not match and is refused (the
    // old pair stays in use); then the new pair loads.
    replace(&pki.join("server2.key"), &pki.join("live.key"));
    replace(&pki.join("server2.pem"), &pki.join("live.pem"));
    wait_for_leaf(&proxy, proxy_cfg.clone(), &second, Duration::from_secs(15)).await;
    wait_for_leaf(&admin, admin_cfg.clone(), &second, Duration::from_secs(15)).await;
    load.progress(10).await;
    load.clone().finish(tasks).await;

    let reloaded =
        audit_records(&g).into_iter().find(|r| r["event"] == "cert_reloaded").expect("a cert_reloaded record");
    assert_eq!(reloaded["actor"], "file change");
    let serial2 = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pki.join("server2.pem"))
        .output()
        .expect("openssl");
    let serial2 = String::from_utf8_lossy(&serial2.stdout).trim().trim_start_matches("serial=").to_ascii_lowercase();
    let audited = reloaded["serial"].as_str().unwrap_or_default().trim_start_matches("00").to_owned();
    assert_eq!(audited, serial2.trim_start_matches("00"), "the audit names the new certificate's serial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_after_the_first_byte_timeout() {
    let (g, _tmp) = start(&format!("{}\n[limits]\nfirst_byte_timeout_ms = 400\n", both_tls()));
    for authority in [addr(&g.proxy), addr(&g.admin)] {
        // Half a ClientHello, then nothing: bytes arrived, so only the handshake timeout can end it.
        let hello = client_hello(3);
        let mut tcp = TcpStream::connect(&authority).await.expect("connect");
        tcp.write_all(&hello[..hello.len() / 2]).await.expect("write");
        let started = Instant::now();
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
        assert!(r.is_ok(), "a stalled handshake on {authority} is still open after 10 s");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "closed after {took:?}");
        assert!(!out.starts_with(b"HTTP/"));
    }
}

#[test]
fn the_admin_cli_speaks_https_with_a_client_certificate() {
    let (g, tmp) = start(&both_tls());
    let pki = tmp.path().join("pki");
    let url = format!("https://{}", addr(&g.admin));
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .args(["admin", "--url", &url])
            .args(extra)
            .arg("state")
            .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("run firebreak admin");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = |f: &str| pki.join(f).display().to_string();
    let (ca, cert, key) = (p("ca.pem"), p("client-alice.pem"), p("client-alice.key"));
    let (ok, out, err) = run(&["--ca-file", &ca, "--client-cert", &cert, "--client-key", &key]);
    assert!(ok && out.contains("\"version\""), "state over mTLS: {out} {err}");
    let (ok, _, err) = run(&["--ca-file", &ca]);
    assert!(!ok && err.contains("cannot reach the admin API"), "no client certificate: {err}");
    let (ok, _, err) = run(&["--client-cert", &cert, "--client-key", &key]);
    assert!(!ok && err.contains("cannot reach the admin API"), "the local CA is not trusted by default: {err}");
    let (ok, _, err) = run(&["--ca-file", &ca, "--client-cert", &cert]);
    assert!(!ok && err.contains("--client-key"), "a certificate without its key: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_the_proxy_listener() {
    let (g, tmp) = start(&format!(
        "proxy_tls = {{ {SERVER}, client_ca_file = \"pki/ca.pem\", client_identity = \"san_email\" }}\n"
    ));
    let pki = tmp.path().join("pki");
    let ca = pki.join("ca.pem");
    let bob = client(&ca, Some((&pki.join("client-bob.pem"), &pki.join("client-bob.key"))), &["h2"]);
    connect(&addr(&g.proxy), bob).await.expect("handshake").chat().await.expect("chat with a client certificate");
    let r = async { connect(&addr(&g.proxy), client(&ca, None, &["h2"])).await?.chat().await }.await;
    assert!(r.is_err(), "the proxy listener served a client without a certificate");
}

/// The console over mTLS: the login page offers the certificate's identity, a certificate login
/// opens a session with the `[[admins]]` role, and the cookie is `Secure` on a TLS listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_logs_in_by_client_certificate_with_a_secure_cookie() {
    let listen = format!(
        "admin_tls = {{ {SERVER}, client_ca_file = \"pki/ca.pem\" }}\n\n\
         [[admins]]\nid = \"bob\"\ncert_identity = \"bob\"\nrole = \"responder\"\n"
    );
    let (g, tmp) = start(&listen);
    let pki = tmp.path().join("pki");
    let cfg = |name: &str| {
        client(
            &pki.join("ca.pem"),
            Some((&pki.join(format!("client-{name}.pem")), &pki.join(format!("client-{name}.key")))),
            &["http/1.1"],
        )
    };
    async fn exchange(
        c: &mut Conn,
        method: &str,
        path: &str,
        cookie: &str,
        form: &str,
    ) -> (u16, http::HeaderMap, String) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &c.authority)
            .header("content-type", "application/x-www-form-urlencoded");
        if !cookie.is_empty() {
            req = req.header("cookie", cookie);
        }
        let req = req.body(Full::new(Bytes::from(form.to_owned()))).expect("request");
        let Sender::H1(s) = &mut c.sender else { panic!("http/1.1 was asked for") };
        s.ready().await.expect("ready");
        let resp = s.send_request(req).await.expect("response");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }
    let mut bob = connect(&addr(&g.admin), cfg("bob")).await.expect("handshake");
    let (status, _, page) = exchange(&mut bob, "GET", "/console/login", "", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("Log in as bob (client certificate)"), "{page}");
    let (status, headers, _) = exchange(&mut bob, "POST", "/console/login", "", "method=certificate").await;
    assert_eq!(status, 303);
    let set = headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("a session cookie").to_owned();
    assert!(set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().expect("pair").to_owned();
    let (status, _, page) = exchange(&mut bob, "GET", "/console/now", &cookie, "").await;
    assert_eq!(status, 200);
    assert!(page.contains("bob · responder"), "the session has bob's role");
    // A certificate that is not an admin identity gets no session.
    let mut stranger = connect(&addr(&g.admin), cfg("alice")).await.expect("handshake");
    let (status, headers, _) = exchange(&mut stranger, "POST", "/console/login", "", "method=certificate").await;
    assert_eq!(status, 401);
    assert!(headers.get("set-cookie").is_none());
}
