//! The gateway's shared runtime, below both surfaces (AI in `proxy`, MCP in `mcp`): the policy in
//! force with its clients ([`Active`]), the switches, the audit trail, metrics, incidents,
//! forensics, alerts, circuit breakers, admission, rate limits and the MCP session bindings; policy
//! reload and canary-safe switch batches. The listeners that serve it are `server`'s.

pub mod alerting;
pub(crate) mod exchange;
pub mod fleet;
pub(crate) mod health;
pub mod incidents;
pub mod mcp_sessions;
pub mod ratelimit;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::audit::{Audit, Record};
use crate::config::{self, Policy, PolicyError};
use crate::http::error::GatewayError;
use crate::http::{admission, listen_tls};
use crate::metrics::Metrics;
use crate::state::{ApplyError, StateStore};

pub use crate::http::admission::Permit;
pub use crate::http::outbound::Clients;
pub(crate) use health::{admit as circuit_admit, refused as circuit_refused};
pub use mcp_sessions::McpSessions;

/// The policy in force together with what was built from it.
#[derive(Debug)]
pub struct Active {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Upstream clients built for it.
    pub clients: Arc<Clients>,
}

impl Active {
    /// Builds the runtime objects of a policy, its scanner knowing the canaries of `snap`.
    pub fn new(policy: Policy, snap: &crate::state::Snapshot) -> Result<Active, String> {
        let clients = Arc::new(Clients::build(&policy)?);
        let policy = if snap.canaries.is_empty() { policy } else { snap.canaries.extend_scanner(&policy)? };
        Ok(Active { policy: Arc::new(policy), clients })
    }
}

/// Where the policy is reloaded from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// A file.
    File(PathBuf),
    /// The embedded demo policy.
    Demo,
}

/// How this process names itself in a fleet: `serve --replica-id` (or `FIREBREAK_REPLICA_ID`) and
/// the listeners as bound. Unused without `[fleet]`; [`Replica::default`] everywhere else.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    /// The explicit replica id (before the policy's `replica_id` and `hostname:port`).
    pub id: Option<String>,
    /// The proxy listener as bound (its port names the replica by default; reported in heartbeats).
    pub proxy: Option<std::net::SocketAddr>,
    /// The admin listener as bound (reported in heartbeats).
    pub admin: Option<std::net::SocketAddr>,
}

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Policy and clients; swapped whole on reload.
    pub active: ArcSwap<Active>,
    /// The switches.
    pub state: StateStore,
    /// The audit trail.
    pub audit: Audit,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Incident triggers, incidents and automatic containment.
    pub incidents: crate::incident::Engine,
    /// Evidence capture around incidents (`[forensics]`; read at start, a reload does not change it).
    pub forensics: crate::forensics::Forensics,
    /// Alert sinks, the recent alerts and anomalies (running once `gateway::alerting::start` is called).
    pub alerts: crate::alerts::Alerts,
    /// Circuit breakers of the upstreams and MCP servers (kept across reloads).
    pub circuits: crate::circuit::Circuits,
    pub(crate) limiter: ratelimit::Limiter,
    /// The incident engine's trigger windows: its own, or the fleet's in Redis (falling back to its own).
    pub(crate) windows: crate::fleet::windows::WindowCounter,
    /// Concurrency (global and per user) and the buffered request-body budget.
    pub(crate) admission: admission::Admission,
    /// MCP session id → the key id that opened it (a session is not shared across principals).
    pub mcp_sessions: McpSessions,
    /// MCP `server/tool` → (definition hash, readOnlyHint) as last listed, for level checks on calls.
    pub(crate) mcp_hints: moka::sync::Cache<String, (Arc<str>, bool)>,
    source: PolicySource,
    reload_lock: tokio::sync::Mutex<()>,
    /// Turns true when the shutdown drain time is up ([`Gateway::close_streams`]).
    closing: tokio::sync::watch::Sender<bool>,
    /// The TLS listeners, whose certificates reload with the policy (registered by `serve`).
    pub listener_tls: listen_tls::Listeners,
    /// Fleet mode (`[fleet]`), `None` on a single node.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
}

/// Admission, continued: while the audit trail cannot be written, a fail-closed policy serves nothing
/// (one atomic load when it can). Shared by the AI and MCP pipelines.
pub(crate) fn audit_gate(gw: &Gateway, policy: &Policy) -> Result<(), GatewayError> {
    if gw.audit.writable() || policy.audit.on_failure == crate::config::OnAuditFailure::FailOpen {
        Ok(())
    } else {
        Err(GatewayError::AuditUnavailable)
    }
}

/// Whether a batch that failed for want of the database is kept as offline containment: an
/// automatic plan's (actor `firebreak`) whose every action tightens.
fn offline_eligible(batch: &crate::state::Batch) -> bool {
    batch.actor.as_deref() == Some("firebreak")
        && !batch.actions.is_empty()
        && batch.actions.iter().all(crate::state::local::tightening)
}

/// Polls the certificate files of `gw`'s TLS listeners every `every`, reloading on change, until
/// the gateway is dropped.
pub async fn watch_listener_tls(gw: std::sync::Weak<Gateway>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        gw.listener_tls.reload_changed(&gw.audit).await;
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// State file.
    #[error(transparent)]
    State(#[from] crate::state::PersistError),
    /// Audit trail.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Clients (TLS).
    #[error("upstream TLS setup failed: {0}")]
    Tls(String),
    /// Incident file.
    #[error(transparent)]
    Incidents(#[from] crate::incident::IncidentError),
    /// A managed prompt could not get its first canary.
    #[error("cannot issue the first canary of a managed prompt: {0}")]
    Canaries(ApplyError),
    /// The evidence store (`[forensics] dir`) could not be opened.
    #[error("{0}")]
    Forensics(String),
    /// Fleet mode could not be set up (a URL's environment variable or file is missing, …). An
    /// unreachable PostgreSQL or Redis is not this: the replica starts degraded.
    #[error("[fleet]: {0}")]
    Fleet(String),
}

/// Why a reload was refused (the old policy stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Invalid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// Could not build clients.
    #[error("upstream TLS setup failed: {0}")]
    Tls(String),
    /// A prompt new in the policy could not get its canary.
    #[error("cannot issue the first canary of a new managed prompt: {0}")]
    Canaries(ApplyError),
}

impl Gateway {
    /// Opens state and audit, and builds the runtime from `policy` (as a replica named by
    /// [`Replica::default`] when the policy has `[fleet]`).
    pub fn new(policy: Policy, source: PolicySource, metrics: Arc<Metrics>) -> Result<Arc<Gateway>, StartError> {
        Gateway::new_replica(policy, source, metrics, &Replica::default())
    }

    /// [`Gateway::new`], with the fleet handle built for `replica` when the policy has `[fleet]`
    /// (it never connects here: see [`crate::fleet::Fleet::new`]).
    pub fn new_replica(
        policy: Policy,
        source: PolicySource,
        metrics: Arc<Metrics>,
        replica: &Replica,
    ) -> Result<Arc<Gateway>, StartError> {
        let fleet = match &policy.fleet {
            None => None,
            Some(settings) => {
                settings.postgres.read().map_err(|e| StartError::Fleet(format!("postgres_url: {e}")))?;
                settings.redis.read().map_err(|e| StartError::Fleet(format!("redis_url: {e}")))?;
                let port = replica.proxy.unwrap_or(policy.listen.proxy).port();
                let id = crate::fleet::replica_id(replica.id.as_deref(), settings, port);
                let fleet =
                    crate::fleet::Fleet::new(settings.clone(), id).map_err(|e| StartError::Fleet(e.to_string()))?;
                tracing::info!(replica = %fleet.replica_id, "fleet mode: PostgreSQL holds the switches, Redis the counters");
                Some(fleet)
            }
        };
        let state = StateStore::open_with(&policy.storage.state_file, Some(&policy))?;
        let audit = Audit::open(&policy.storage.audit_file, &policy.audit, metrics.clone())?;
        let incidents = crate::incident::Engine::open(&crate::incident::file_for(&policy.storage.state_file))?;
        let forensics = match &policy.forensics {
            Some(s) => crate::forensics::Forensics::open(s.clone()).map_err(StartError::Forensics)?,
            None => crate::forensics::Forensics::off(),
        };
        let alerts = crate::alerts::Alerts::new(metrics.clone(), &policy.storage.state_file);
        let admission =
            admission::Admission::new(policy.limits.max_concurrent_requests, policy.limits.max_buffered_request_bytes);
        let circuits = crate::circuit::Circuits::new(&policy);
        let active = Active::new(policy, &state.load()).map_err(StartError::Tls)?;
        metrics.set_switch_version(state.load().version);
        let windows = crate::fleet::windows::WindowCounter::new(fleet.clone(), incidents.windows().clone());
        Ok(Arc::new(Gateway {
            active: ArcSwap::from_pointee(active),
            state,
            audit,
            metrics,
            incidents,
            forensics,
            alerts,
            circuits,
            limiter: ratelimit::Limiter::new(fleet.clone()),
            windows,
            admission,
            mcp_sessions: McpSessions::default(),
            mcp_hints: moka::sync::Cache::new(100_000),
            source,
            reload_lock: tokio::sync::Mutex::new(()),
            closing: tokio::sync::watch::Sender::new(false),
            listener_tls: listen_tls::Listeners::default(),
            fleet,
        }))
    }

    /// Opens the gateway ([`Gateway::new`]) and issues a first canary to every managed prompt that
    /// has none yet (a persisted, audited switch batch by `firebreak`), so no request is ever sent
    /// with a prompt but without its canary.
    pub async fn start(
        policy: Policy,
        source: PolicySource,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Gateway>, StartError> {
        Gateway::start_replica(policy, source, metrics, &Replica::default()).await
    }

    /// [`Gateway::start`] as the fleet replica `replica` (`serve` passes its flag and the bound
    /// listeners); the same as `start` without `[fleet]`.
    pub async fn start_replica(
        policy: Policy,
        source: PolicySource,
        metrics: Arc<Metrics>,
        replica: &Replica,
    ) -> Result<Arc<Gateway>, StartError> {
        let gw = Gateway::new_replica(policy, source, metrics, replica)?;
        fleet::start(&gw, replica).await;
        let _g = gw.reload_lock.lock().await;
        let active = gw.active.load_full();
        gw.issue_missing_canaries(&active).await.map_err(StartError::Canaries)?;
        drop(_g);
        Ok(gw)
    }

    /// Applies a switch batch. A batch that issues canaries first swaps in a scanner that detects
    /// them (before the snapshot that injects them becomes visible: requests load the snapshot
    /// first, then the policy), so a new canary is never sent upstream undetected. In fleet mode the
    /// batch is committed to PostgreSQL first (on the database's snapshot), then installed here.
    pub async fn apply(&self, batch: &crate::state::Batch) -> Result<crate::state::Applied, ApplyError> {
        if self.fleet.is_none() && !batch.actions.iter().any(crate::state::Action::issues_canary) {
            let policy = self.policy();
            return self.state.apply(batch, &policy).await;
        }
        let _g = self.reload_lock.lock().await;
        let active = self.active.load_full();
        match self.apply_with_scanner(batch, &active).await {
            Err(ApplyError::Fleet(f)) if !f.unknown && offline_eligible(batch) => {
                drop(_g);
                self.contain_offline(batch, &f.message).await
            }
            r => r,
        }
    }

    /// Fleet mode, PostgreSQL unreachable, an automatic containment plan (fail closed): its
    /// tightening actions go into this replica's overlay as offline containment, in force at once
    /// here, and are committed to the fleet when the database returns
    /// ([`Gateway::replay_offline_containment`]). The version does not change.
    async fn contain_offline(
        &self,
        batch: &crate::state::Batch,
        why: &str,
    ) -> Result<crate::state::Applied, ApplyError> {
        use crate::state::local::{LocalEntry, Origin};
        let policy = self.policy();
        let before = self.state.base().version;
        let entry = LocalEntry {
            id: 0,
            actions: batch.actions.clone(),
            actor: batch.actor.clone().unwrap_or_else(|| "firebreak".into()),
            reason: batch.reason.clone(),
            since: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            origin: Origin::OfflineContainment { incident: None },
        };
        let (id, after) = self
            .state
            .set_local(&policy, |o| {
                let id = o.next_id();
                o.entries.push(LocalEntry { id, ..entry });
                Ok(id)
            })
            .await?
            .map_err(|e| ApplyError::Invalid(vec![crate::state::ActionError::at(0, e)]))?;
        tracing::warn!(
            id,
            error = why,
            "fleet unavailable: automatic containment applied on this replica alone until the database returns"
        );
        self.audit
            .record(
                Record::new("switch")
                    .with("event", "offline_containment")
                    .with("scope", "replica")
                    .with("actor", "firebreak")
                    .with("id", id)
                    .with("reason", batch.reason.as_str())
                    .with("version", before)
                    .with("actions", serde_json::to_value(&batch.actions).unwrap_or_default()),
            )
            .await;
        self.publish_override();
        Ok(crate::state::Applied { before, after })
    }

    /// Commits every offline containment of this replica's overlay as a fleet batch (actor
    /// `firebreak`, reason `replayed after outage: …`) and drops it from the overlay. Called by the
    /// sync task once the database answers; an entry that still cannot be committed stays.
    pub async fn replay_offline_containment(&self) {
        use crate::state::local::Origin;
        let entries: Vec<_> = self
            .state
            .local()
            .entries
            .into_iter()
            .filter(|e| matches!(e.origin, Origin::OfflineContainment { .. }))
            .collect();
        for e in entries {
            let batch = crate::state::Batch {
                actions: e.actions.clone(),
                reason: format!("replayed after outage: {}", e.reason),
                actor: Some("firebreak".into()),
                expect_version: None,
            };
            let applied = {
                let _g = self.reload_lock.lock().await;
                let active = self.active.load_full();
                self.apply_with_scanner(&batch, &active).await
            };
            match applied {
                Ok(applied) => {
                    let policy = self.policy();
                    let _ = self
                        .state
                        .set_local(&policy, |o| {
                            o.entries.retain(|x| x.id != e.id);
                            Ok(())
                        })
                        .await;
                    self.publish_override();
                    self.audit
                        .record(
                            Record::new("switch")
                                .with("event", "offline_containment_replayed")
                                .with("actor", "firebreak")
                                .with("id", e.id)
                                .with("reason", batch.reason.as_str())
                                .with("before_version", applied.before)
                                .with("after_version", applied.after.version)
                                .with("actions", serde_json::to_value(&batch.actions).unwrap_or_default()),
                        )
                        .await;
                    tracing::info!(
                        id = e.id,
                        version = applied.after.version,
                        "offline containment committed to the fleet"
                    );
                }
                Err(ApplyError::Fleet(_)) => return,
                Err(err) => {
                    // Invalid now (a reload removed its target): it stays in force here; an operator
                    // lifts it (admin --local lift).
                    tracing::error!(id = e.id, error = %err, "offline containment could not be committed to the fleet");
                }
            }
        }
    }

    /// Tells the heartbeat (fleet mode) which override is in force on this replica.
    pub fn publish_override(&self) {
        if let Some(f) = &self.fleet {
            let o = self.state.local();
            let v = (!o.is_empty()).then(|| serde_json::to_value(&o).unwrap_or_default());
            if let Ok(mut slot) = f.status.local_override.lock() {
                *slot = v;
            }
        }
    }

    /// Puts `policy` (the policy in force, its scanner extended with new canaries) in force with
    /// `active`'s clients.
    fn store_policy(&self, active: &Active, policy: crate::config::Policy) {
        self.active.store(Arc::new(Active { policy: Arc::new(policy), clients: active.clients.clone() }));
    }

    /// The canary-issuing apply (every apply in fleet mode), with `reload_lock` held by the caller.
    async fn apply_with_scanner(
        &self,
        batch: &crate::state::Batch,
        active: &Arc<Active>,
    ) -> Result<crate::state::Applied, ApplyError> {
        if let Some(fleet) = &self.fleet {
            return self.apply_fleet(fleet, batch, active).await;
        }
        let applied = self
            .state
            .apply_with(batch, &active.policy, |next| {
                let policy = next.canaries.extend_scanner(&active.policy)?;
                self.store_policy(active, policy);
                Ok(())
            })
            .await?;
        self.metrics.set_switch_version(applied.after.version);
        Ok(applied)
    }

    /// Fleet mode: commits the batch to the shared snapshot (compare-and-set on the database's
    /// version), then installs the committed snapshot here (scanner first when canaries changed,
    /// the local file too: fail-static). `reload_lock` held by the caller.
    async fn apply_fleet(
        &self,
        fleet: &Arc<crate::fleet::Fleet>,
        batch: &crate::state::Batch,
        active: &Arc<Active>,
    ) -> Result<crate::state::Applied, ApplyError> {
        let mut record = serde_json::Map::new();
        record.insert("kind".into(), "switch".into());
        record.insert("actor".into(), batch.actor.clone().unwrap_or_else(|| "admin".into()).into());
        record.insert("reason".into(), batch.reason.clone().into());
        record.insert("actions".into(), serde_json::to_value(&batch.actions).unwrap_or_default());
        crate::audit::digest_sessions(&mut record);
        let now = std::time::SystemTime::now();
        let mut scanner = None;
        let committed = fleet
            .commit_batch(batch.expect_version, record, |shared| {
                let next = crate::state::apply_batch(&shared, batch, &active.policy, now)?;
                if next.canaries != shared.canaries {
                    let policy = next
                        .canaries
                        .extend_scanner(&active.policy)
                        .map_err(|e| ApplyError::Invalid(vec![crate::state::ActionError::at(0, e)]))?;
                    scanner = Some(policy);
                }
                Ok(next)
            })
            .await
            .map_err(|e| match e {
                ApplyError::Fleet(mut f) if !f.unknown => {
                    f.message = format!(
                        "{}: nothing was changed. Every replica keeps enforcing switch version {}. For an emergency on \
                         this replica alone: `firebreak admin --local level lockdown --reason …`",
                        f.message,
                        self.state.base().version
                    );
                    ApplyError::Fleet(f)
                }
                e => e,
            })?;
        if let Some(policy) = scanner {
            self.store_policy(active, policy);
        }
        let before = committed.before;
        let from = Some((fleet.replica_id.clone(), committed.committed_at_us));
        let after = self.install_committed(fleet, committed.after, &active.policy, from).await;
        Ok(crate::state::Applied { before, after })
    }

    /// Installs a snapshot committed to the fleet (by this replica, or announced by another one:
    /// `from` = (replica, commit time in µs)) when it is newer than the base: the local file, the
    /// swap, the switch-version metric, the fleet status and metrics, a local audit record
    /// (`switch`/`fleet_applied`), and the applied version reported to the database (not awaited).
    /// The scanner must already know the snapshot's canaries. Returns the snapshot in force.
    async fn install_committed(
        &self,
        fleet: &Arc<crate::fleet::Fleet>,
        snap: crate::state::Snapshot,
        policy: &Policy,
        from: Option<(String, i64)>,
    ) -> Arc<crate::state::Snapshot> {
        use std::sync::atomic::Ordering::Relaxed;
        let version = snap.version;
        let installed = match self.state.install_remote(snap, policy).await {
            Ok(s) => s,
            Err((s, e)) => {
                tracing::error!(error = %e, version, "fleet snapshot installed, but the local state file could not be written: a restart without the database would enforce an older snapshot");
                Some(s)
            }
        };
        let Some(current) = installed else {
            // Already there (the notification of this very commit, or the poll, was first).
            return self.state.load();
        };
        self.metrics.set_switch_version(version);
        fleet.status.applied_version.fetch_max(version, Relaxed);
        fleet.status.db_version.fetch_max(version, Relaxed);
        let db = fleet.status.db_version.load(Relaxed);
        fleet.metrics.switch_lag_versions.store(db.saturating_sub(version), Relaxed);
        fleet.metrics.snapshots_installed.fetch_add(1, Relaxed);
        let mut record = Record::new("switch").with("event", "fleet_applied").with("version", version);
        if let Some((replica, t)) = &from {
            let ms = (crate::fleet::switches::now_us() - t).max(0) / 1000;
            record = record.with("from_replica", replica.as_str()).with("propagation_ms", ms);
        }
        self.audit.record(record).await;
        let f = fleet.clone();
        tokio::spawn(async move {
            if let Err(e) = f.report_applied(version).await {
                tracing::debug!(error = %e, version, "could not report the applied switch version");
            }
        });
        current
    }

    /// A newer snapshot from the fleet (notification, poll, first sync): swaps in a scanner that
    /// knows its canaries first (as [`Gateway::apply`] does), then the snapshot. `from` is the
    /// committing replica and its commit time (µs), when a notification said so. True when it was
    /// installed (it was newer than the base).
    pub async fn install_fleet_snapshot(&self, snap: crate::state::Snapshot, from: Option<(String, i64)>) -> bool {
        let _g = self.reload_lock.lock().await;
        let active = self.active.load_full();
        self.install_fleet_locked(snap, from, &active).await
    }

    /// [`Gateway::install_fleet_snapshot`] with `reload_lock` held; the scanner is built on `active`.
    async fn install_fleet_locked(
        &self,
        snap: crate::state::Snapshot,
        from: Option<(String, i64)>,
        active: &Arc<Active>,
    ) -> bool {
        let Some(fleet) = &self.fleet else { return false };
        let base = self.state.base();
        if snap.version <= base.version {
            return false;
        }
        if snap.canaries != base.canaries {
            match snap.canaries.extend_scanner(&active.policy) {
                Ok(policy) => self.store_policy(active, policy),
                Err(e) => {
                    // Never install a snapshot whose canaries this replica could not detect.
                    tracing::error!(error = %e, version = snap.version, "fleet snapshot not installed: its canaries cannot be added to the scanner");
                    if let Ok(mut p) = fleet.status.schema_problem.lock() {
                        *p = Some(format!("switch snapshot v{} not installed: {e}", snap.version));
                    }
                    return false;
                }
            }
        }
        let from = from.filter(|(r, _)| !r.is_empty());
        self.install_committed(fleet, snap, &active.policy, from).await;
        true
    }

    /// Issues a first canary to every managed prompt of `active` without one (`reload_lock` held).
    /// True when it did, and so stored `active` (with a scanner knowing them) as the one in force.
    ///
    /// In fleet mode the batch expects the synced version; when another replica committed first
    /// (replicas starting together), it re-syncs and checks again, at most three times, so the fleet
    /// issues one canary, not one per replica. With the database unreachable it issues none: a
    /// prompt without a canary is refused (fail closed) until the database is back.
    async fn issue_missing_canaries(&self, active: &Arc<Active>) -> Result<bool, ApplyError> {
        let missing = |snap: &crate::state::Snapshot| -> Vec<String> {
            active.policy.managed_prompts.keys().filter(|id| snap.canaries.current(id).is_none()).cloned().collect()
        };
        let mut tries = 0;
        let (prompts, applied) = loop {
            let snap = self.state.base();
            let prompts = missing(&snap);
            if prompts.is_empty() {
                if tries == 0 {
                    return Ok(false);
                }
                // Another replica issued them: this replica installed its snapshot, whose canaries the
                // scanner of `active` must know too.
                let policy = snap
                    .canaries
                    .extend_scanner(&active.policy)
                    .map_err(|e| ApplyError::Invalid(vec![crate::state::ActionError::at(0, e)]))?;
                self.store_policy(active, policy);
                return Ok(true);
            }
            let batch = crate::state::Batch {
                actions: prompts.iter().map(|id| crate::state::Action::IssueCanary { prompt: id.clone() }).collect(),
                reason: "first canary for a managed prompt".into(),
                actor: Some("firebreak".into()),
                expect_version: self.fleet.as_ref().map(|_| snap.version),
            };
            tries += 1;
            match self.apply_with_scanner(&batch, active).await {
                Ok(applied) => break (prompts, applied),
                Err(ApplyError::Conflict { .. }) if tries < 3 => {
                    if let Some(fleet) = &self.fleet {
                        match fleet.fetch().await {
                            Ok(Some(remote)) => {
                                self.install_fleet_locked(remote.snapshot, remote.committed, active).await;
                            }
                            Ok(None) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(ApplyError::Fleet(f)) => {
                    tracing::warn!(error = %f.message, "no first canary issued (fleet unavailable): requests with these managed prompts are refused until it is");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        };
        self.audit
            .record(
                Record::new("rotation")
                    .with("event", "canary_issued")
                    .with("actor", "firebreak")
                    .with("prompts", prompts)
                    .with("before_version", applied.before)
                    .with("after_version", applied.after.version),
            )
            .await;
        Ok(true)
    }

    /// Forgets every rate-limit bucket. For offline replay, where each case must start from a full
    /// allowance; a serving gateway never calls it.
    pub fn reset_rate_limits(&self) {
        self.limiter.clear();
    }

    /// Ends every open stream (AI and MCP, now and later) with its terminal error event: the
    /// gateway is shutting down and the drain time is up.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Gateway::close_streams`] was called (at once if it already was). Stream pumps
    /// select on it.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            if rx.wait_for(|c| *c).await.is_err() {
                // The gateway is gone: so is every stream's reason to wait.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.active.load().policy.clone()
    }

    /// Re-reads the policy, validates it off the hot path, and swaps it in. On any error the old
    /// policy stays in force. Listener addresses, storage paths, the concurrency limit and the
    /// buffered-bytes budget need a restart to change. The TLS listeners' certificate files are
    /// re-read too, whatever became of the policy (a bad new certificate is refused on its own).
    pub async fn reload(&self, actor: &str) -> Result<Arc<Policy>, ReloadError> {
        let reloaded = self.reload_policy(actor).await;
        self.listener_tls.reload(&self.audit, actor).await;
        reloaded
    }

    async fn reload_policy(&self, actor: &str) -> Result<Arc<Policy>, ReloadError> {
        let _g = self.reload_lock.lock().await;
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || match source {
            PolicySource::File(p) => config::load(&p),
            PolicySource::Demo => config::load_str(config::DEMO_NAME, config::DEMO_POLICY, std::path::Path::new(".")),
        })
        .await
        .unwrap_or_else(|e| {
            Err(PolicyError(vec![config::Located {
                file: String::new(),
                line: 0,
                message: format!("reload task failed: {e}"),
                hint: None,
            }]))
        });
        let outcome = match loaded {
            Ok(mut policy) => {
                // Storage paths need a restart to change: the files in use stay (also when they came
                // from --state-file/--audit-file, which the reloaded file does not know).
                policy.storage = self.active.load().policy.storage.clone();
                // So does fleet mode: the replica keeps the [fleet] settings it started with.
                policy.fleet = self.active.load().policy.fleet.clone();
                Active::new(policy, &self.state.load()).map_err(ReloadError::Tls)
            }
            Err(e) => Err(ReloadError::Invalid(e)),
        };
        match outcome {
            Ok(active) => {
                // Breakers first: a target new in this policy has one before a request can reach it.
                self.circuits.rebuild(&active.policy);
                let active = Arc::new(active);
                // A prompt new in this policy gets its canary in the same swap: the batch stores the
                // policy (with a scanner knowing the canary) before the snapshot injecting it.
                let old = self.active.load_full();
                match self.issue_missing_canaries(&active).await {
                    Ok(true) => {} // stored with the scanner that knows the new canaries
                    Ok(false) => self.active.store(active),
                    Err(e) => {
                        self.active.store(old);
                        self.metrics.policy_reload("rejected");
                        tracing::warn!(actor, error = %e, "policy reload rejected: a new prompt could not get its canary");
                        return Err(ReloadError::Canaries(e));
                    }
                }
                let policy = self.active.load().policy.clone();
                self.state.recompose(&policy).await;
                self.metrics.policy_reload("ok");
                self.audit.record(Record::new("policy").with("event", "reloaded").with("actor", actor)).await;
                tracing::info!(actor, "policy reloaded");
                Ok(policy)
            }
            Err(e) => {
                self.metrics.policy_reload("rejected");
                self.audit
                    .record(
                        Record::new("policy")
                            .with("event", "reload_rejected")
                            .with("actor", actor)
                            .with("reason", e.to_string()),
                    )
                    .await;
                tracing::warn!(actor, error = %e, "policy reload rejected; the old policy stays in force");
                Err(e)
            }
        }
    }
}
