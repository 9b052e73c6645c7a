//! What the AI pipeline (`proxy::pipeline`) and the MCP gateway (`mcp`) share at both ends of an
//! exchange: [`admit`] (admission, the switch snapshot then the policy, identity) and [`finish`]
//! (the audit record derived from the exchange's [`Facts`], forensics, incidents, the in-flight
//! gauge), so the two surfaces cannot drift apart on either.

use std::sync::Arc;

use http::HeaderMap;

use super::{Active, Gateway};
use crate::config::{KeyEntry, Policy};
use crate::facts::Facts;
use crate::http::admission::Permit;
use crate::http::client::ClientMeta;
use crate::http::error::GatewayError;
use crate::state::Snapshot;

/// A request let in: its concurrency slot, the switch snapshot and the policy it is decided with,
/// and its principal.
pub(crate) struct Admitted {
    /// The global concurrency slot (and, once taken, the user's share).
    pub permit: Permit,
    /// The switch snapshot the request is decided with.
    pub snap: Arc<Snapshot>,
    /// The policy, loaded after the snapshot.
    pub active: Arc<Active>,
    /// The principal.
    pub key: Arc<KeyEntry>,
}

/// Admission, then the switch snapshot and the policy, then identity. The snapshot is loaded
/// before the policy: a canary rotation stores the policy whose scanner knows the new canary before
/// the snapshot that injects it, so this order never pairs a new canary with a scanner that cannot
/// see it. With `audit_gate`, a fail-closed policy refuses while the audit trail cannot be written
/// before the caller is identified (the MCP gateway checks it after the body instead, so that the
/// refusal answers the request's JSON-RPC id).
pub(crate) fn admit(gw: &Gateway, headers: &HeaderMap, audit_gate: bool) -> Result<Admitted, GatewayError> {
    let permit = gw.admission.admit()?;
    let snap = gw.state.load();
    let active = gw.active.load_full();
    if audit_gate {
        super::audit_gate(gw, &active.policy)?;
    }
    let key = crate::http::authenticate(&active.policy, headers)?;
    Ok(Admitted { permit, snap, active, key })
}

impl Admitted {
    /// Takes the user's share of the concurrency limit at the snapshot's level.
    pub(crate) fn hold_for_user(&mut self, gw: &Gateway) -> Result<(), GatewayError> {
        let max = self.active.policy.levels.get(self.snap.level).max_in_flight;
        gw.admission.hold_for_user(&mut self.permit, &self.key.user, max)
    }

    /// After the body was read: when a switch batch was acknowledged meanwhile, the newer snapshot
    /// (then the policy, in the order of [`admit`]) decides the rest of the request, and the key is
    /// looked up again in that policy. True when it changed.
    pub(crate) fn refresh(&mut self, gw: &Gateway, headers: &HeaderMap) -> Result<bool, GatewayError> {
        let latest = gw.state.load();
        if Arc::ptr_eq(&latest, &self.snap) {
            return Ok(false);
        }
        self.snap = latest;
        self.active = gw.active.load_full();
        self.key = crate::http::authenticate(&self.active.policy, headers)?;
        Ok(true)
    }
}

/// What else a finished exchange hands over besides its facts.
#[derive(Default)]
pub(crate) struct Finish {
    /// Who sent it, for the record (absent on records that are not the request's own).
    pub client: Option<ClientMeta>,
    /// The payloads, when `[forensics]` is on.
    pub capture: Option<crate::forensics::Capture>,
    /// The concurrency slot, released once the record is written.
    pub permit: Option<Permit>,
    /// Whether this ends the request (it leaves the in-flight gauge).
    pub ends_request: bool,
}

/// Finishes an exchange, once: its audit record is made from `facts` (with the client's facts),
/// its payloads are captured (before the record is audited, so an incident it opens finds this
/// exchange in the ring), the record is written and the incident engine sees the facts
/// (automatic containment is in force when this returns), then the request leaves the in-flight
/// gauge and its slot is released.
pub(crate) async fn finish(gw: &Gateway, policy: &Policy, facts: &Facts, done: Finish) {
    let mut record = facts.record(&policy.scanner);
    if let Some(c) = &done.client {
        c.fill(&mut record, &policy.scanner, &policy.listen.trusted_proxies);
    }
    if let Some(c) = done.capture {
        gw.forensics.capture(&record, c, &policy.scanner);
    }
    super::incidents::audited(gw, facts, record).await;
    if done.ends_request {
        gw.metrics.in_flight(-1);
    }
    drop(done.permit);
}
