//! The two-person rule: a batch containing an action named in `[admin.require_second]` is not
//! applied; it is held here and answered 202 with a pending id. A *different* identity with the
//! batch's role approves it (`POST /admin/v1/pending/ID/approve`) within the TTL, and only then is it
//! applied, exactly as held (`expect_version` is checked at that moment). The requester or anyone with
//! the role can reject it; an expired one answers 410.
//!
//! Pending actions are kept in memory only: a restart drops them (the audit trail keeps the
//! request), so nothing half-approved survives a restart or a failover, and a lockdown is never
//! lifted by a stale approval. Audit kind `approval`, events `requested`, `approved`, `rejected`,
//! `expired`, `refused`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::identity::{Identity, Role};
use super::prompts::Rotate;
use super::{error, json_response, Admin};
use crate::audit::Record;
use crate::http::body::Body;
use crate::state::{ActionError, ApplyError, Batch};

/// Most actions pending at once (one more answers 429).
const MAX_PENDING: usize = 256;
/// How long an expired entry is kept so its approval answers 410 rather than 404.
const KEEP_EXPIRED: Duration = Duration::from_secs(3600);

/// What is waiting: the exact batch, and the route that made it.
#[derive(Debug, Clone)]
pub(super) enum Held {
    /// `POST /admin/v1/switches`.
    Switches(Batch),
    /// `POST /admin/v1/rotate/prompt|canary/ID`.
    Rotation {
        /// The prompt id.
        prompt: String,
        /// Prompt or canary.
        what: Rotate,
        /// Its batch.
        batch: Batch,
    },
    /// `POST /admin/v1/playbooks/PLAN`: the plan as expanded when it was asked for.
    Plan {
        /// The plan and its actions for the target.
        expanded: crate::gateway::incidents::Expanded,
        /// The same actions as a batch, with the run's reason.
        batch: Batch,
    },
}

impl Held {
    pub(super) fn batch(&self) -> &Batch {
        match self {
            Held::Switches(b) | Held::Rotation { batch: b, .. } | Held::Plan { batch: b, .. } => b,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Held::Switches(_) => "switches",
            Held::Rotation { what: Rotate::Prompt, .. } => "rotate_prompt",
            Held::Rotation { what: Rotate::Canary, .. } => "rotate_canary",
            Held::Plan { .. } => "playbook",
        }
    }
}

/// One pending action.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    id: String,
    held: Held,
    requested_by: Identity,
    on_behalf_of: Option<String>,
    /// The `[admin.require_second]` names it matched.
    needs: Vec<String>,
    /// The role an approver needs.
    role: Role,
    created: SystemTime,
    ttl: Duration,
    deadline: Instant,
}

impl Pending {
    fn to_json(&self, now: Instant) -> Value {
        let b = self.held.batch();
        let expires_at = self.created + self.ttl;
        json!({
            "id": self.id,
            "kind": self.held.kind(),
            "prompt": match &self.held { Held::Rotation { prompt, .. } => Some(prompt.as_str()), _ => None },
            "plan": match &self.held { Held::Plan { expanded, .. } => Some(expanded.plan.as_str()), _ => None },
            "batch": {"actions": b.actions, "reason": b.reason, "expect_version": b.expect_version},
            "requested_by": {"id": self.requested_by.id, "role": self.requested_by.role.as_str()},
            "on_behalf_of": self.on_behalf_of,
            "needs_second": self.needs,
            "required_role": self.role.as_str(),
            "created_at": humantime::format_rfc3339_seconds(self.created).to_string(),
            "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(),
            "expires_in_secs": self.deadline.saturating_duration_since(now).as_secs(),
            "expired": now >= self.deadline,
        })
    }
}

/// The pending actions of this process.
#[derive(Debug, Default)]
pub(super) struct PendingStore {
    inner: Mutex<BTreeMap<String, Pending>>,
}

impl PendingStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        // A panic while holding the lock cannot leave the map half-changed (single inserts and
        // removes), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn purge(map: &mut BTreeMap<String, Pending>, now: Instant) {
        map.retain(|_, p| now < p.deadline + KEEP_EXPIRED);
    }
}

/// What became of a pending id looked up to approve or reject.
enum Take {
    Found(Box<Pending>),
    Expired(Box<Pending>),
    Unknown,
}

impl Admin {
    /// Holds `held` for a second approval when it matches `[admin.require_second]`; `None` when it
    /// does not (the caller applies it now).
    pub(super) async fn hold_if_needed(
        &self,
        held: Held,
        who: &Identity,
        on_behalf_of: Option<&str>,
    ) -> Result<Held, Response<Body>> {
        let policy = self.gw.policy();
        let Some(rule) = &policy.admins.require_second else { return Ok(held) };
        let needs = super::identity::needs_second(&rule.actions, &held.batch().actions);
        if needs.is_empty() {
            return Ok(held);
        }
        // Checked now against the current state, so a batch that could never apply does not wait
        // for a second person; checked again, whole, when it is approved.
        if let Err(errors) = dry_run(held.batch(), &self.gw.state.load(), &policy) {
            return Err(super::apply_error(ApplyError::Invalid(errors)));
        }
        let now = Instant::now();
        let p = Pending {
            id: format!("p-{}", hex::encode(rand::random::<[u8; 8]>())),
            role: super::identity::batch_role(&held.batch().actions),
            held,
            requested_by: who.clone(),
            on_behalf_of: on_behalf_of.map(str::to_owned),
            needs,
            created: SystemTime::now(),
            ttl: rule.ttl,
            deadline: now + rule.ttl,
        };
        {
            let mut map = self.pending.lock();
            PendingStore::purge(&mut map, now);
            if map.values().filter(|p| now < p.deadline).count() >= MAX_PENDING {
                return Err(error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_pending",
                    &format!(
                        "{MAX_PENDING} actions are already waiting for a second approval; approve or reject some first"
                    ),
                ));
            }
            map.insert(p.id.clone(), p.clone());
        }
        let record = self
            .approval_record("requested", &p)
            .with("actions", serde_json::to_value(&p.held.batch().actions).unwrap_or(Value::Null))
            .with("reason", p.held.batch().reason.as_str())
            .with("expires_at", humantime::format_rfc3339_seconds(p.created + p.ttl).to_string());
        if let Err(e) = self.gw.audit.record_durable(record).await {
            self.pending.lock().remove(&p.id);
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_failed",
                &format!("the request could not be audited ({e}); nothing is pending and nothing changed"),
            ));
        }
        tracing::warn!(id = %p.id, actor = %who.id, needs = ?p.needs, "admin action held for a second approval");
        Err(json_response(
            StatusCode::ACCEPTED,
            &json!({
                "applied": false,
                "pending": p.to_json(now),
                "message": format!(
                    "{} needs a second approval: another identity with role {} must run `firebreak admin approve {}` (POST /admin/v1/pending/{}/approve) within {}",
                    p.needs.join(", "), p.role, p.id, p.id, humantime::format_duration(p.ttl)
                ),
            }),
        ))
    }

    /// `GET /admin/v1/pending`: what waits, oldest first (expired ones are not listed).
    pub(super) fn pending_list(&self) -> Response<Body> {
        let now = Instant::now();
        let mut map = self.pending.lock();
        PendingStore::purge(&mut map, now);
        let mut live: Vec<&Pending> = map.values().filter(|p| now < p.deadline).collect();
        live.sort_by_key(|p| p.created);
        let list: Vec<Value> = live.iter().map(|p| p.to_json(now)).collect();
        json_response(StatusCode::OK, &json!({ "pending": list }))
    }

    fn take(&self, id: &str, who: &Identity, approve: bool) -> Result<Take, Box<Pending>> {
        let now = Instant::now();
        let mut map = self.pending.lock();
        let Some(p) = map.get(id) else { return Ok(Take::Unknown) };
        if now >= p.deadline {
            let p = map.remove(id).map(Box::new);
            return Ok(p.map_or(Take::Unknown, Take::Expired));
        }
        // Checked under the lock, before removing: a refused caller leaves it pending.
        let allowed = if approve {
            p.requested_by.id != who.id && who.role >= p.role
        } else {
            p.requested_by.id == who.id || who.role >= p.role
        };
        if !allowed {
            return Err(Box::new(p.clone()));
        }
        Ok(map.remove(id).map(Box::new).map_or(Take::Unknown, Take::Found))
    }

    /// `POST /admin/v1/pending/ID/approve`: a second identity applies the held batch.
    pub(super) async fn pending_approve(&self, id: &str, who: &Identity) -> Response<Body> {
        let p = match self.take(id, who, true) {
            Ok(Take::Found(p)) => p,
            Ok(Take::Expired(p)) => return self.expired(&p).await,
            Ok(Take::Unknown) => return unknown(id),
            Err(p) if p.requested_by.id == who.id => {
                let rec = self.approval_record("refused", &p).with("by", who.id.as_str());
                if let Err(e) = self.gw.audit.record_durable(rec).await {
                    tracing::error!(error = %e, "the audit record of a refused approval failed");
                }
                return error(
                    StatusCode::FORBIDDEN,
                    "same_identity",
                    &format!("`{}` requested {id}; a different identity must approve it (the two-person rule)", who.id),
                );
            }
            Err(p) => return self.refuse(who, p.role, &format!("approving {id} ({})", p.needs.join(", "))).await,
        };
        self.gw.audit.record(self.approval_record("approved", &p).with("approved_by", who.id.as_str())).await;
        let approval = Approval { pending_id: &p.id, approved_by: &who.id, requested_by: &p.requested_by.id };
        let on_behalf_of = p.on_behalf_of.as_deref();
        match p.held.clone() {
            Held::Switches(batch) => self.apply_switches(batch, on_behalf_of, Some(approval), None).await,
            Held::Rotation { prompt, what, batch } => {
                self.apply_rotation(prompt, what, batch, on_behalf_of, Some(approval)).await
            }
            Held::Plan { expanded, batch } => {
                self.apply_playbook(expanded, &batch.reason, &p.requested_by.id, Some(approval)).await
            }
        }
    }

    /// `POST /admin/v1/pending/ID/reject`: the requester withdraws it, or someone with its role
    /// turns it down. Nothing is applied.
    pub(super) async fn pending_reject(&self, id: &str, who: &Identity) -> Response<Body> {
        let p = match self.take(id, who, false) {
            Ok(Take::Found(p)) => p,
            Ok(Take::Expired(p)) => return self.expired(&p).await,
            Ok(Take::Unknown) => return unknown(id),
            Err(p) => return self.refuse(who, p.role, &format!("rejecting {id} ({})", p.needs.join(", "))).await,
        };
        let rec = self.approval_record("rejected", &p).with("rejected_by", who.id.as_str());
        if let Err(e) = self.gw.audit.record_durable(rec).await {
            tracing::error!(error = %e, id, "pending action rejected but the audit record failed");
        }
        json_response(StatusCode::OK, &json!({"rejected": p.id, "by": who.id, "applied": false}))
    }

    async fn expired(&self, p: &Pending) -> Response<Body> {
        if let Err(e) = self.gw.audit.record_durable(self.approval_record("expired", p)).await {
            tracing::error!(error = %e, "the audit record of an expired approval failed");
        }
        error(
            StatusCode::GONE,
            "pending_expired",
            &format!(
                "{} expired (it waited longer than {}); nothing was applied — send the request again",
                p.id,
                humantime::format_duration(p.ttl)
            ),
        )
    }

    fn approval_record(&self, event: &str, p: &Pending) -> Record {
        Record::new("approval")
            .with("event", event)
            .with("pending_id", p.id.as_str())
            .with("kind_of_request", p.held.kind())
            .with("requested_by", p.requested_by.id.as_str())
            .with("actor", p.requested_by.id.as_str())
            .with_opt("on_behalf_of", p.on_behalf_of.as_deref())
            .with("needs_second", p.needs.clone())
            .with("required_role", p.role.as_str())
    }
}

/// Who asked for and who approved a held batch, for the applied change's audit record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Approval<'a> {
    pub pending_id: &'a str,
    pub approved_by: &'a str,
    pub requested_by: &'a str,
}

impl Approval<'_> {
    /// Adds both identities to `r`.
    pub(super) fn add_to(self, r: Record) -> Record {
        r.with("pending_id", self.pending_id)
            .with("requested_by", self.requested_by)
            .with("approved_by", self.approved_by)
    }
}

/// Every action of `batch` applied to a scratch copy of `snap`: the errors a real apply would give.
fn dry_run(
    batch: &Batch,
    snap: &crate::state::Snapshot,
    policy: &crate::config::Policy,
) -> Result<(), Vec<ActionError>> {
    let mut scratch = snap.clone();
    let actor = batch.actor.as_deref().unwrap_or("admin");
    let mut errors = Vec::new();
    if batch.reason.trim().is_empty() {
        errors.push(ActionError {
            index: 0,
            message: "reason must not be empty: it is recorded in the audit trail".into(),
        });
    }
    for (i, a) in batch.actions.iter().enumerate() {
        if let Err(e) = a.apply(&mut scratch, policy, actor, &batch.reason, SystemTime::now()) {
            errors.push(ActionError { index: i, message: e });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn unknown(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "unknown_pending",
        &format!("no pending action `{id}` (pending actions live in memory: a restart drops them); see GET /admin/v1/pending"),
    )
}
