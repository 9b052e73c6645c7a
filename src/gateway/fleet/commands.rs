//! Fleet commands and MCP session invalidation, the gateway's side: a LISTEN connection of its own
//! (`firebreak_cmd`, `firebreak_mcp`) and the runner that executes every command issued on any
//! replica (woken by the notification, with a poll of the table as the backstop), plus the work
//! due when PostgreSQL is reachable again: local incidents merged, pending MCP session bindings
//! written, and the hourly cleanup of idle bindings.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::audit::Record;
use crate::fleet::commands::{self, Command, Kind};
use crate::fleet::Fleet;
use crate::gateway::Gateway;

/// How often idle MCP session bindings are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

/// Spawns the LISTEN task and the runner (fleet mode only).
pub fn spawn(gw: &Arc<Gateway>) {
    let Some(fleet) = gw.fleet.clone() else { return };
    let wake = Arc::new(Notify::new());
    tokio::spawn(listen(Arc::downgrade(gw), fleet.clone(), wake.clone()));
    tokio::spawn(run(Arc::downgrade(gw), fleet, wake));
}

/// Keeps a LISTEN connection up (reconnecting with backoff, 100 ms to 5 s); every reconnection
/// wakes the runner once, to catch up on what was missed.
async fn listen(gw: Weak<Gateway>, fleet: Arc<Fleet>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if gw.strong_count() == 0 {
            return;
        }
        let started = Instant::now();
        let why = listen_once(&gw, &fleet, &wake).await;
        if gw.strong_count() == 0 {
            return;
        }
        tracing::debug!(error = %why, "fleet command listener reconnecting");
        wake.notify_one();
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One LISTEN connection, until it ends: why it ended.
async fn listen_once(gw: &Weak<Gateway>, fleet: &Fleet, wake: &Notify) -> String {
    let mut config = fleet.db.config.clone();
    config.application_name(format!("firebreak-cmd:{}", fleet.replica_id));
    let (client, mut conn) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => return crate::fleet::db::db_error(&e),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send((n.channel().to_owned(), n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let listen = format!("LISTEN {}; LISTEN {}", commands::CHANNEL, crate::fleet::sessions::CHANNEL);
    if let Err(e) = client.batch_execute(&listen).await {
        driver.abort();
        return crate::fleet::db::db_error(&e);
    }
    // Caught up from here on: anything issued before this point is found by the runner's poll.
    wake.notify_one();
    while let Some((channel, payload)) = rx.recv().await {
        let Some(gw) = gw.upgrade() else {
            driver.abort();
            return "the gateway stopped".into();
        };
        if channel == commands::CHANNEL {
            wake.notify_one();
        } else if channel == crate::fleet::sessions::CHANNEL {
            gw.mcp_sessions.invalidate(&payload);
        }
    }
    drop(client);
    "the LISTEN connection ended".into()
}

/// Runs the commands issued after this replica started, and the reconnect work.
async fn run(gw: Weak<Gateway>, fleet: Arc<Fleet>, wake: Arc<Notify>) {
    let mut last: Option<i64> = None;
    let mut next_cleanup = Instant::now() + Duration::from_secs(60);
    loop {
        if last.is_some() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(fleet.settings.poll_interval) => {}
            }
        }
        let Some(gw) = gw.upgrade() else { return };
        if last.is_none() {
            match commands::max_id(&fleet).await {
                Ok(id) => last = Some(id),
                Err(_) => {
                    drop(gw);
                    tokio::time::sleep(fleet.settings.poll_interval).await;
                    continue;
                }
            }
        }
        crate::gateway::incidents::merge_local(&gw).await;
        crate::gateway::mcp_sessions::flush_pending(&gw).await;
        if let Some(from) = last {
            if let Ok(cmds) = commands::since(&fleet, from).await {
                for c in cmds {
                    if c.issued_by != fleet.replica_id {
                        run_one(&gw, &fleet, &c).await;
                    }
                    last = Some(c.id);
                }
            }
        }
        if Instant::now() >= next_cleanup {
            match crate::fleet::sessions::cleanup(&fleet).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "idle MCP session bindings deleted"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "MCP session cleanup skipped"),
            }
            next_cleanup = Instant::now() + CLEANUP_EVERY;
        }
    }
}

/// Runs one command issued on another replica and records this replica's result.
async fn run_one(gw: &Gateway, fleet: &Fleet, c: &Command) {
    let (ok, detail) = match c.kind {
        Some(Kind::RotateCredentials) => {
            let (ok, detail) = match rotate_credentials(gw, c.target.as_deref()) {
                Ok(r) => (r.failed.is_empty(), r.to_json()),
                Err(e) => (false, json!({ "error": e })),
            };
            let rec = Record::new("rotation")
                .with("event", "credential")
                .with("actor", c.actor.as_str())
                .with("reason", c.reason.as_str())
                .with("fleet_command", c.id)
                .with("issued_by", c.issued_by.as_str())
                .with_opt("rotated", detail.get("rotated").cloned())
                .with_opt(
                    "failed",
                    detail.get("failed").filter(|f| f.as_object().is_some_and(|m| !m.is_empty())).cloned(),
                )
                .with_opt("error", detail.get("error").cloned());
            if let Err(e) = gw.audit.record_durable(rec).await {
                tracing::error!(error = %e, "credentials rotated (fleet command) but the audit record failed");
            }
            tracing::warn!(command = c.id, actor = %c.actor, ok, "credentials rotated by a fleet command");
            (ok, detail)
        }
        Some(Kind::Reload) => reload(gw, &format!("{} (fleet command {})", c.actor, c.id)).await,
        None => (false, json!({ "error": format!("unknown command kind `{}`: upgrade this replica", c.kind_name) })),
    };
    if let Err(e) = commands::record_result(fleet, c.id, ok, &detail).await {
        tracing::warn!(command = c.id, error = %e, "fleet command ran but its result is not recorded");
    }
}

/// A reload as a command result: `(true, {"policy_hash"})` (the hash `admin fleet` compares:
/// `Policy.content_sha256`) or `(false, {"error"})`.
pub async fn reload(gw: &Gateway, actor: &str) -> (bool, Value) {
    reload_result(&gw.reload(actor).await)
}

/// A reload's outcome as a command result (also this replica's own, for `reload --all`).
pub fn reload_result(r: &Result<Arc<crate::config::Policy>, crate::gateway::ReloadError>) -> (bool, Value) {
    match r {
        Ok(p) => (true, json!({ "policy_hash": p.content_sha256 })),
        Err(e) => (false, json!({ "error": e.to_string() })),
    }
}

/// What a credential rotation did.
#[derive(Debug, Default)]
pub struct Rotated {
    /// Names rotated (`mcp:<server>` for an MCP server).
    pub rotated: Vec<String>,
    /// Name → why it failed (the old value stays in force).
    pub failed: serde_json::Map<String, Value>,
}

impl Rotated {
    /// `{"rotated": […], "failed": {…}}`.
    pub fn to_json(&self) -> Value {
        json!({ "rotated": self.rotated, "failed": self.failed })
    }
}

/// Re-reads provider and MCP-server credentials from their sources and swaps them in: `only` one
/// name (an upstream, or an MCP server with or without `mcp:`), or every one that has a source.
/// `Err`: nothing to rotate (the message says why).
pub fn rotate_credentials(gw: &Gateway, only: Option<&str>) -> Result<Rotated, String> {
    let policy = gw.policy();
    let mut targets: Vec<(String, &crate::config::Credential)> = Vec::new();
    for (name, u) in &policy.upstreams {
        targets.push((name.clone(), &u.credential));
    }
    for (name, s) in &policy.mcp.servers {
        targets.push((format!("mcp:{name}"), &s.credential));
    }
    let selected: Vec<_> = match only {
        Some(n) => targets.into_iter().filter(|(t, _)| t == n || t.strip_prefix("mcp:") == Some(n)).collect(),
        None => targets.into_iter().filter(|(_, c)| c.source().is_some()).collect(),
    };
    if selected.is_empty() {
        return Err(match only {
            Some(n) => format!("no upstream or MCP server named `{n}`"),
            None => "no upstream has a credential source to rotate".into(),
        });
    }
    let mut out = Rotated::default();
    for (name, cred) in selected {
        match cred.rotate() {
            Ok(()) => out.rotated.push(name),
            Err(e) => {
                out.failed.insert(name, Value::from(e));
            }
        }
    }
    Ok(out)
}

/// Issues a command on behalf of this replica (which has run it already: `own` is its result),
/// then waits for every live replica's result: the `fleet` member of the admin answer.
pub async fn issue_and_wait(
    gw: &Gateway,
    kind: Kind,
    target: Option<&str>,
    actor: &str,
    reason: &str,
    own: (bool, &Value),
) -> Option<(Option<i64>, Value)> {
    let fleet = gw.fleet.as_ref()?;
    let id = match commands::issue(fleet, kind, target, actor, reason).await {
        Ok(id) => id,
        Err(e) => {
            return Some((None, json!({ "complete": false, "error": format!("done on this replica only: {e}") })))
        }
    };
    if let Err(e) = commands::record_result(fleet, id, own.0, own.1).await {
        tracing::warn!(command = id, error = %e, "own result of a fleet command not recorded");
    }
    match commands::wait(fleet, id, fleet.settings.wait_timeout).await {
        Ok(o) => Some((Some(id), o.to_json(id))),
        Err(e) => Some((Some(id), json!({ "command": id, "complete": false, "error": e.to_string() }))),
    }
}
