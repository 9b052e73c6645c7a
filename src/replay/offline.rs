//! Offline mode: every case runs in-process through the real pipeline against the policy, with the
//! upstream's reply scripted in the case (a [`ScriptedReply`] in the request's extensions). No socket,
//! no network, no running gateway.
//!
//! One [`Gateway`] serves the whole run, its state and audit files in a private temp dir. Between
//! cases the rate-limit buckets are cleared, and a case that set switches as preconditions has them
//! put back afterwards, so cases never see each other. A case's audit records are read back from the
//! trail after a flush barrier.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::build;
use super::expect::Observed;
use super::suite::Case;
use crate::config::Policy;
use crate::gateway::{Gateway, PolicySource};
use crate::metrics::Metrics;
use crate::state::{Batch, Snapshot};

/// The in-process gateway cases run against.
pub struct Offline {
    gw: Arc<Gateway>,
    audit_path: PathBuf,
    offset: u64,
    base: Arc<Snapshot>,
    dir: PathBuf,
}

impl Drop for Offline {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Offline {
    /// Builds the gateway for `policy`, with state and audit in a fresh temp dir (the policy's own
    /// files are never touched).
    pub async fn new(mut policy: Policy, source: PolicySource) -> Result<Offline, super::SetupError> {
        let dir = scratch_dir().join(format!("firebreak-replay-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&dir).map_err(|e| super::SetupError::Scratch(dir.clone(), e))?;
        policy.storage.state_file = dir.join("state.json");
        policy.storage.audit_file = dir.join("audit.jsonl");
        // The scratch trail gets a scratch key (generated beside it), never the production one.
        policy.audit.key = None;
        policy.audit.previous_key = None;
        // Replayed attacks are not evidence: the policy's evidence store is never touched.
        policy.forensics = None;
        let audit_path = policy.storage.audit_file.clone();
        let gw = match Gateway::start(policy, source, Arc::new(Metrics::default())).await {
            Ok(gw) => gw,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let base = gw.state.load();
        Ok(Offline { gw, audit_path, offset: 0, base, dir })
    }

    /// Runs one case; `Err` is a reason the case could not run (it fails with it).
    pub async fn run(&mut self, case: &Case, key: &str) -> Result<Observed, String> {
        let req = case.request.as_ref().ok_or("the case has no request")?;
        self.gw.reset_rate_limits();
        if !case.state.is_empty() {
            let batch = Batch {
                actions: case.state.clone(),
                reason: format!("replay precondition of case {}", case.id),
                actor: Some("firebreak-replay".into()),
                expect_version: None,
            };
            self.gw.apply(&batch).await.map_err(|e| format!("precondition not applied: {e}"))?;
        }
        let result = self.send(case, req, key).await;
        // Preconditions, and what the gateway recorded itself (MCP tool pins first seen), end with the case.
        if self.gw.state.load().version != self.base.version {
            self.gw.state.reset_to(&self.base).await.map_err(|e| format!("could not reset the switches: {e}"))?;
        }
        result
    }

    async fn send(&mut self, case: &Case, req: &super::suite::HttpRequest, key: &str) -> Result<Observed, String> {
        let mut b = http::Request::builder().method(req.method.clone()).uri(req.path.as_str());
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if !key.is_empty() {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let mut request = b.body(Full::new(req.body.clone())).map_err(|e| format!("invalid request: {e}"))?;
        let reply = case.reply.clone().unwrap_or_else(|| build::default_reply(&build::info_of(req)));
        request.extensions_mut().insert(reply);
        let resp = crate::server::route(self.gw.clone(), request).await;
        let status = resp.status().as_u16();
        let request_id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = match tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) => return Err(format!("the response body broke off: {e}")),
            Err(_) => return Err("the response did not finish within 30 s".into()),
        };
        let records = self.new_records().await?;
        let records = records
            .into_iter()
            .filter(|r| {
                r.get("request_id").and_then(Value::as_str) == Some(request_id.as_str())
                    || r.get("kind").and_then(Value::as_str) == Some("incident")
            })
            .collect();
        Ok(Observed { status, body: body.to_vec(), records, audited: true })
    }

    /// The records appended to the trail since the last call.
    async fn new_records(&mut self) -> Result<Vec<Value>, String> {
        self.gw.audit.flush().await.map_err(|e| format!("audit flush failed: {e}"))?;
        let mut f = std::fs::File::open(&self.audit_path).map_err(|e| format!("audit trail: {e}"))?;
        f.seek(SeekFrom::Start(self.offset)).map_err(|e| format!("audit trail: {e}"))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| format!("audit trail: {e}"))?;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        Ok(buf[..complete].split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice::<Value>(l).ok()).collect())
    }
}

/// Where the run's state and audit files go: `$TMPDIR` when set, else `/dev/shm` where it exists (the
/// switch state is fsynced on every change, which costs nothing in memory), else the system temp dir.
fn scratch_dir() -> PathBuf {
    if std::env::var_os("TMPDIR").is_none() {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            return shm.to_path_buf();
        }
    }
    std::env::temp_dir()
}
