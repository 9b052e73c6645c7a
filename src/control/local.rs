//! Break-glass on this replica alone (`/admin/v1/local/switches`, `firebreak admin --local …`): a
//! tightening overlay on top of the snapshot in force, which works with PostgreSQL down (and in
//! single-node mode, where it is the same overlay). And the `?wait=all` query of switch batches.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::{error, json_response, read, Admin};
use crate::audit::Record;
use crate::http::body::Body;
use crate::state::local::{self, LocalEntry, Origin};
use crate::state::Action;

use super::identity::Identity;

/// A break-glass request.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalBatch {
    actions: Vec<Action>,
    reason: String,
    #[serde(default)]
    actor: Option<String>,
}

/// `?wait=all[&timeout=2s]`: the wait, `None` without `wait=all` or outside fleet mode (a single
/// node has no one to wait for: it answers at once); the 400 answer when the query is wrong.
pub(super) fn wait_all(
    query: Option<&str>,
    fleet: Option<&crate::fleet::Fleet>,
) -> Result<Option<Duration>, Box<Response<Body>>> {
    let mut wait = false;
    let mut timeout = None;
    for (k, v) in query.unwrap_or_default().split('&').filter_map(|p| p.split_once('=')) {
        match k {
            "wait" if v == "all" => wait = true,
            "wait" => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_wait",
                    &format!("wait={v}: the only wait is `all`"),
                )))
            }
            "timeout" => match humantime::parse_duration(v) {
                Ok(d) if d <= Duration::from_secs(60) => timeout = Some(d),
                _ => {
                    return Err(Box::new(error(
                        StatusCode::BAD_REQUEST,
                        "invalid_timeout",
                        &format!("timeout={v} is not a duration of at most 60s (e.g. 300ms, 2s)"),
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(match (wait, fleet) {
        (true, Some(f)) => Some(timeout.unwrap_or(f.settings.wait_timeout)),
        _ => None,
    })
}

impl Admin {
    /// `POST /admin/v1/local/switches {actions, reason}`: adds a tightening entry to this replica's
    /// overlay (422 for anything that would loosen), audited locally before it is acknowledged.
    pub(super) async fn local_set(&self, req: Request<Incoming>, who: &Identity) -> Response<Body> {
        let bytes = match read(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let batch: LocalBatch = match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_batch",
                    &format!("the local override is not valid: {e}; send {{\"actions\": […], \"reason\": \"…\"}}"),
                )
            }
        };
        let policy = self.gw.policy();
        let problems = local::check(&batch.actions, &batch.reason, &self.gw.state.base(), &policy);
        if !problems.is_empty() {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"error": {
                    "code": "invalid_local_override",
                    "message": "a local override only tightens, and every action must be valid; nothing changed",
                    "problems": problems}}),
            );
        }
        let on_behalf_of = batch.actor.clone().filter(|a| *a != who.id);
        let entry = LocalEntry {
            id: 0,
            actions: batch.actions.clone(),
            actor: who.id.clone(),
            reason: batch.reason.clone(),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            origin: Origin::BreakGlass,
        };
        let set = self
            .gw
            .state
            .set_local(&policy, |o| {
                let id = o.next_id();
                o.entries.push(LocalEntry { id, ..entry });
                Ok(id)
            })
            .await;
        let (id, current) = match set {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return error(StatusCode::CONFLICT, "local_override_refused", &e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", &e.to_string()),
        };
        let record = Record::new("switch")
            .with("event", "local_override")
            .with("scope", "replica")
            .with("actor", who.id.as_str())
            .with_opt("on_behalf_of", on_behalf_of.as_deref())
            .with("reason", batch.reason.as_str())
            .with("id", id)
            .with("version", current.version)
            .with("actions", serde_json::to_value(&batch.actions).unwrap_or(Value::Null))
            .with_opt("replica", self.gw.fleet.as_ref().map(|f| f.replica_id.as_str()));
        if let Err(e) = self.gw.audit.record_durable(record).await {
            // Not audited: not made. Take it back.
            let _ = self
                .gw
                .state
                .set_local(&policy, |o| {
                    o.entries.retain(|x| x.id != id);
                    Ok(())
                })
                .await;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_failed",
                &format!("the local override was not made: its audit record could not be made durable ({e})"),
            );
        }
        self.gw.publish_override();
        tracing::warn!(actor = %who.id, id, "break-glass: local override set on this replica");
        json_response(
            StatusCode::OK,
            &json!({"applied": true, "scope": "replica", "id": id, "version": current.version,
                    "local_override": current.local_override, "state": &*current}),
        )
    }

    /// `DELETE /admin/v1/local/switches[/{id}]`: lifts one overlay entry, or all.
    pub(super) async fn local_lift(&self, id: Option<String>, who: &Identity) -> Response<Body> {
        if let Some(why) = self.gw.audit.failure() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                &format!("the audit trail cannot be written ({why}); nothing was changed"),
            );
        }
        let id = match id.as_deref().map(str::parse::<u32>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_id",
                    "a local override id is a number (admin --local state)",
                )
            }
        };
        let policy = self.gw.policy();
        let lifted = self
            .gw
            .state
            .set_local(&policy, |o| {
                let before: Vec<u32> = o.entries.iter().map(|e| e.id).collect();
                match id {
                    Some(n) if !before.contains(&n) => return Err(format!("no local override {n}")),
                    Some(n) => o.entries.retain(|e| e.id != n),
                    None => o.entries.clear(),
                }
                Ok(before.into_iter().filter(|i| !o.entries.iter().any(|e| e.id == *i)).collect::<Vec<u32>>())
            })
            .await;
        let (lifted, current) = match lifted {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return error(StatusCode::NOT_FOUND, "unknown_local_override", &e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", &e.to_string()),
        };
        let record = Record::new("switch")
            .with("event", "local_override_lifted")
            .with("scope", "replica")
            .with("actor", who.id.as_str())
            .with("lifted", lifted.clone())
            .with("version", current.version)
            .with_opt("replica", self.gw.fleet.as_ref().map(|f| f.replica_id.as_str()));
        if let Err(e) = self.gw.audit.record_durable(record).await {
            tracing::error!(error = %e, "local override lifted but its audit record could not be made durable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_failed",
                &format!("the local override was lifted but its audit record could not be made durable ({e})"),
            );
        }
        self.gw.publish_override();
        tracing::warn!(actor = %who.id, ?lifted, "break-glass: local override lifted on this replica");
        json_response(
            StatusCode::OK,
            &json!({"lifted": lifted, "scope": "replica", "version": current.version,
                    "local_override": current.local_override, "state": &*current}),
        )
    }
}
