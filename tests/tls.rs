//! HTTPS upstreams: a fake OpenAI upstream served over TLS with the development certificate in
//! `certs/`, trusted by the gateway only through the policy's `extra_ca`.

mod common;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::{sha256_hex, Gateway};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

const CLIENT_KEY: &str = "sk-fb-tls-client-4b1d9e";
const UPSTREAM_CREDENTIAL: &str = "sk-upstream-tls-credential-77aa";

fn certs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// What the fake upstream saw.
#[derive(Default)]
struct Seen {
    /// HTTP requests that got past the TLS handshake.
    requests: AtomicUsize,
    /// Requests that carried the gateway-injected credential.
    with_credential: AtomicUsize,
    /// TLS handshakes that failed, with the server side's error.
    handshake_errors: std::sync::Mutex<Vec<String>>,
}

/// Starts an HTTPS fake OpenAI upstream on 127.0.0.1; returns its port.
async fn fake_openai_tls(seen: Arc<Seen>) -> u16 {
    let dir = certs_dir();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("certs/server.pem")
        .collect::<Result<_, _>>()
        .expect("server.pem parses");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("certs/server.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate and key match");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                // A failed handshake (untrusted CA on the client side) just ends here.
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        seen.handshake_errors.lock().expect("lock").push(e.to_string());
                        return;
                    }
                };
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(req, &seen).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

async fn answer(req: hyper::Request<hyper::body::Incoming>, seen: &Seen) -> hyper::Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {UPSTREAM_CREDENTIAL}"));
    if authorized {
        seen.with_credential.fetch_add(1, Ordering::SeqCst);
    }
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, v) = if !authorized {
        (
            401,
            json!({"error": {"message": "bad upstream credential", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        )
    } else if path != "/v1/chat/completions" {
        (404, json!({"error": {"message": "no such path", "type": "invalid_request_error", "code": null}}))
    } else {
        (
            200,
            json!({
                "id": "chatcmpl-tls-1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": parsed["model"].as_str().unwrap_or("gpt-test"),
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello over TLS"},
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
            }),
        )
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    resp
}

/// A gateway whose only upstream is the HTTPS fake, with or without `extra_ca`.
fn gateway(port: u16, with_extra_ca: bool) -> (Gateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cred = tmp.path().join("upstream-credential");
    std::fs::write(&cred, format!("{UPSTREAM_CREDENTIAL}\n")).expect("credential file");
    let ca = certs_dir().join("ca.pem");
    let extra_ca = if with_extra_ca { format!("extra_ca = {:?}\n", ca.display().to_string()) } else { String::new() };
    let policy = format!(
        r#"
[upstreams.secure]
kind = "openai"
base_url = "https://127.0.0.1:{port}"
credential_file = {cred:?}
{extra_ca}
[[keys]]
id = "tls-client"
sha256 = "{hash}"
tenant = "acme"
user = "tess"
role = "developer"

[roles.developer]
"#,
        cred = cred.display().to_string(),
        hash = sha256_hex(CLIENT_KEY),
    );
    std::fs::write(tmp.path().join("policy.toml"), policy).expect("write policy");
    let g = Gateway::spawn(tmp.path());
    (g, tmp)
}

async fn chat(g: &Gateway) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request through the gateway");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("response is not JSON: {text}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_through_https_upstream_with_extra_ca() {
    let seen = Arc::new(Seen::default());
    let port = fake_openai_tls(seen.clone()).await;
    let (g, _tmp) = gateway(port, true);
    let (status, body) = chat(&g).await;
    assert_eq!(status, 200, "chat through the HTTPS upstream failed: {body}\n{}", g.stderr());
    assert_eq!(body["choices"][0]["message"]["content"], "hello over TLS", "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1, "the upstream saw exactly one request");
    assert!(seen.handshake_errors.lock().expect("lock").is_empty(), "the handshake succeeded");
    assert_eq!(
        seen.with_credential.load(Ordering::SeqCst),
        1,
        "the gateway injected the provider credential from credential_file"
    );
    // A second request reuses the pooled TLS connection and still works.
    let (status, body) = chat(&g).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_without_extra_ca_is_not_trusted() {
    let seen = Arc::new(Seen::default());
    let port = fake_openai_tls(seen.clone()).await;
    let (g, _tmp) = gateway(port, false);
    let (status, body) = chat(&g).await;
    assert_eq!(status, 502, "the platform roots must not trust the test CA: {body}");
    // OpenAI error format.
    let err = &body["error"];
    assert!(err.is_object(), "OpenAI-style error body expected: {body}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(err["type"].is_string(), "{body}");
    assert!(err.get("code").is_some(), "{body}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0, "no HTTP request may pass an untrusted TLS handshake");
    // The gateway did connect, and refused the handshake itself: the server saw the client's alert.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let errors = seen.handshake_errors.lock().expect("lock").clone();
        if let Some(e) = errors.first() {
            assert!(e.to_lowercase().contains("alert"), "handshake refused by the client: {e}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the upstream saw no failed TLS handshake");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The upstream credential never reaches the client.
    assert!(!body.to_string().contains(UPSTREAM_CREDENTIAL));
}
