//! Online mode: cases are sent over HTTP to a running gateway (`--target URL`).
//!
//! A gateway in front of a real provider cannot be told what the model answers, so cases that script
//! the upstream's reply are skipped with a note — unless `--scripted-upstream ADDR` is given: replay
//! then listens on ADDR as the provider itself and answers each request with the case's reply (cases
//! run one at a time, so the reply in force is always the current case's). The target's policy must
//! route the cases' models to `http://ADDR`. Cases that set switches as preconditions are skipped
//! (they need the admin API; run them offline). With `--target-audit FILE` (the target's audit
//! trail, readable on this machine) outcomes are judged from the request's audit records — each case
//! is followed by an unauthenticated `GET /v1/models` whose record marks that the case's records are
//! all written — and without it, from the response alone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::build;
use super::expect::Observed;
use super::suite::Case;
use super::{Outcome, SetupError};
use crate::http::script::ScriptedReply;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The reply the scripted upstream serves now.
type Slot = Arc<Mutex<Option<ScriptedReply>>>;

/// A running gateway to replay against.
pub struct Online {
    client: HttpsClient,
    target: String,
    audit: Option<PathBuf>,
    upstream: Option<Slot>,
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Online {
    /// A runner for `target` (`http://host:port` or `https://…`).
    pub async fn new(
        target: &str,
        audit: Option<PathBuf>,
        scripted_upstream: Option<std::net::SocketAddr>,
    ) -> Result<Online, SetupError> {
        let bad = |m: String| SetupError::Target(target.to_owned(), m);
        let uri: http::Uri = target.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(bad("must be an http:// or https:// URL".into()));
        }
        let tls = crate::http::tls::client_config(None).map_err(SetupError::Tls)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let (mut upstream, mut stop) = (None, None);
        if let Some(addr) = scripted_upstream {
            let (slot, tx) = serve_upstream(addr).await?;
            upstream = Some(slot);
            stop = Some(tx);
        }
        Ok(Online { client, target: target.trim_end_matches('/').to_owned(), audit, upstream, _stop: stop })
    }

    /// Sends one case.
    pub async fn run(&mut self, case: &Case, key: &str) -> Result<Observed, Outcome> {
        let req = case.request.as_ref().ok_or_else(|| Outcome::Fail("the case has no request".into()))?;
        if !case.state.is_empty() {
            return Err(Outcome::Skip("sets switches as preconditions: run it offline".into()));
        }
        match (&self.upstream, &case.reply) {
            (None, Some(_)) => {
                return Err(Outcome::Skip(
                    "scripts the upstream's reply: run it offline, or online with --scripted-upstream".into(),
                ))
            }
            (Some(slot), reply) => {
                let r = reply.clone().unwrap_or_else(|| build::default_reply(&build::info_of(req)));
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            }
            (None, None) => {}
        }
        let mut b = http::Request::builder().method(req.method.clone()).uri(format!("{}{}", self.target, req.path));
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b = if req.path == crate::protocol::Endpoint::Messages.path() {
            b.header("x-api-key", key)
        } else {
            b.header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        };
        let request =
            b.body(Full::new(req.body.clone())).map_err(|e| Outcome::Fail(format!("invalid request: {e}")))?;
        let resp = match tokio::time::timeout(Duration::from_secs(60), self.client.request(request)).await {
            Err(_) => return Err(Outcome::Fail("the target did not answer within 60 s".into())),
            Ok(Err(e)) => return Err(Outcome::Fail(format!("could not reach the target: {e}"))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let request_id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = match tokio::time::timeout(Duration::from_secs(120), resp.into_body().collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) => return Err(Outcome::Fail(format!("the response body broke off: {e}"))),
            Err(_) => return Err(Outcome::Fail("the response did not finish within 120 s".into())),
        };
        let (records, audited) = match &self.audit {
            Some(path) if !request_id.is_empty() => {
                let barrier = self.barrier().await;
                (records_of(path, &request_id, barrier.as_deref()).await, true)
            }
            _ => (Vec::new(), false),
        };
        Ok(Observed { status, body: body.to_vec(), records, audited })
    }
}

impl Online {
    /// A request queued into the target's audit trail after every record of the case (a stream's
    /// pump queues its records before the client sees the stream end): an unauthenticated
    /// `GET /v1/models`, refused with 401 and audited as `auth.missing_key`. Returns its request id.
    async fn barrier(&self) -> Option<String> {
        let req = http::Request::get(format!("{}/v1/models", self.target)).body(Full::new(Bytes::new())).ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await.ok()?.ok()?;
        let id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let _ = resp.into_body().collect().await;
        id
    }
}

/// The audit records of one request, once the barrier's record (or, without one, the request's own
/// decision record) is in the file.
async fn records_of(path: &std::path::Path, request_id: &str, barrier: Option<&str>) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let id_of = |r: &Value| r.get("request_id").and_then(Value::as_str).map(str::to_owned);
    loop {
        let all = crate::audit::read_since(path, None, usize::MAX).unwrap_or_default();
        let done = match barrier {
            Some(b) => all.iter().any(|r| id_of(r).as_deref() == Some(b)),
            None => all.iter().any(|r| {
                id_of(r).as_deref() == Some(request_id) && r.get("event").and_then(Value::as_str) == Some("decision")
            }),
        };
        if done || Instant::now() > deadline {
            return all.into_iter().filter(|r| id_of(r).as_deref() == Some(request_id)).collect();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Listens on `addr` as the provider: every request gets the reply in the slot.
async fn serve_upstream(addr: std::net::SocketAddr) -> Result<(Slot, tokio::sync::oneshot::Sender<()>), SetupError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| SetupError::Listen(addr, e))?;
    let slot: Slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let s = s.clone();
        async move {
            let _ = req.into_body().collect().await;
            let reply = s.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match reply {
                Some(r) => r.response(),
                None => {
                    let mut r = http::Response::new(crate::http::body::full("no case is running"));
                    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    r
                }
            }
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::server::serve(
        listener,
        handler,
        Duration::from_secs(10),
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(1),
    ));
    Ok((slot, tx))
}
