//! Alerts: incidents, containment switches, audit failures and circuit transitions pushed to the
//! people on call (signed webhooks, Slack, PagerDuty Events v2, OTLP logs), and the recent alerts
//! and anomalies that `firebreak admin alerts` lists.
//!
//! # How an alert travels
//!
//! ```text
//! audit writer thread ──try_send──► tap (bounded) ──► router task ──try_send──► sink queue (bounded) ──► sender task ──► receiver
//!   (records of kind incident,          │                 classify, enrich,          per sink              retries with backoff
//!    switch, circuit, fleet; the        │                 keep in the ring                                 and jitter, then the
//!    audit-failure signal)              └ full: dropped, counted                                            dead-letter file
//! ```
//!
//! The audit trail is the event bus: whatever writes an audit record of a tapped kind can raise an
//! alert, and nothing is alerted that the trail does not also hold (except the audit failure
//! itself). The request path never waits for any of it: the writer hands records over with
//! `try_send` on its own thread, and only records of a tapped kind are cloned at all.
//!
//! Anomalies ([`anomaly`]): rule spikes (a rule's decisions in one window against the window
//! before, from the decision counters) and triggers close to firing (the incident engine's windows).
//!
//! This module knows nothing of the gateway: the wiring to a running gateway (the tap, the router
//! task, the spike watch, the incident book's enrichment) is `gateway::alerting`.

pub mod anomaly;
mod deliver;
pub mod event;
pub mod format;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

pub use deliver::Outcome;
pub use event::{Alert, Draft};

use crate::config::alerts::AlertsPolicy;
use crate::config::Policy;
use crate::http::outbound::HttpClient;
use crate::metrics::Metrics;

/// Records waiting between the audit writer and the router.
pub(crate) const TAP_CAPACITY: usize = 4096;

/// The alerts of a running gateway.
#[derive(Debug)]
pub struct Alerts {
    recent: Mutex<VecDeque<Arc<Alert>>>,
    next: AtomicU64,
    /// Start time (unix seconds, hex) in every alert id, so ids stay unique across restarts.
    epoch: String,
    sinks: Mutex<Option<Running>>,
    client: OnceLock<Result<HttpClient, String>>,
    /// Where undeliverable alerts go when the policy names no file.
    default_dead_letter: PathBuf,
    metrics: Arc<Metrics>,
    pub(crate) spikes: anomaly::Spikes,
    /// Turns true on shutdown ([`Alerts::close`]).
    closing: tokio::sync::watch::Sender<bool>,
    /// The sinks' sender tasks (including those of sinks a reload replaced).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The sinks running for one `[alerts]` section.
#[derive(Debug)]
struct Running {
    policy: Arc<AlertsPolicy>,
    list: Vec<Arc<deliver::Sink>>,
}

/// Why `alerts test` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// No such sink.
    #[error("no alert sink `{0}`; sinks: {1}")]
    Unknown(String, String),
    /// The HTTP client could not be built.
    #[error("alerts cannot be sent: {0}")]
    Client(String),
}

impl Alerts {
    /// Alerts for a gateway whose state file is `state_file` (the default dead-letter file,
    /// `<state>.alerts-dead-letter.jsonl`, goes beside it). Nothing runs until [`start`].
    pub fn new(metrics: Arc<Metrics>, state_file: &std::path::Path) -> Alerts {
        Alerts {
            recent: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(1),
            epoch: format!(
                "{:x}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            ),
            sinks: Mutex::new(None),
            client: OnceLock::new(),
            default_dead_letter: state_file.with_extension("alerts-dead-letter.jsonl"),
            metrics,
            spikes: anomaly::Spikes::default(),
            closing: tokio::sync::watch::Sender::new(false),
            tasks: Mutex::default(),
        }
    }

    fn client(&self) -> Result<HttpClient, String> {
        self.client.get_or_init(|| deliver::client(std::time::Duration::from_secs(5))).clone()
    }

    /// The dead-letter file in force.
    pub fn dead_letter_file(&self, policy: &Policy) -> PathBuf {
        policy.alerts.dead_letter_file.clone().unwrap_or_else(|| self.default_dead_letter.clone())
    }

    /// The dead-letter file and its rotation size under `policy`.
    fn dead_letter(&self, policy: &Policy) -> deliver::DeadLetter {
        deliver::DeadLetter { path: self.dead_letter_file(policy), max_bytes: policy.alerts.dead_letter_max_bytes }
    }

    /// The running sinks of `policy`, (re)started when its `[alerts]` changed: a sink whose
    /// settings are unchanged keeps its queue and task; a changed or removed one finishes what it
    /// holds and stops.
    pub(crate) fn sinks(&self, policy: &Policy) -> Vec<Arc<deliver::Sink>> {
        let mut running = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = running.as_ref().filter(|r| Arc::ptr_eq(&r.policy, &policy.alerts)) {
            return r.list.clone();
        }
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alert sinks cannot start: no HTTP client");
                return Vec::new();
            }
        };
        let context = format::Context {
            console_url: policy.alerts.console_url.clone(),
            service: policy.telemetry.service_name.clone(),
        };
        let dead_letter = Arc::new(self.dead_letter(policy));
        let old = running.take();
        let mut list = Vec::new();
        for cfg in &policy.alerts.sinks {
            let reuse = old.as_ref().and_then(|o| {
                o.list
                    .iter()
                    .find(|s| {
                        *s.config == *cfg
                            && s.context == context
                            && o.policy.dead_letter_file == policy.alerts.dead_letter_file
                            && o.policy.dead_letter_max_bytes == policy.alerts.dead_letter_max_bytes
                    })
                    .cloned()
            });
            list.push(reuse.unwrap_or_else(|| {
                let (sink, task) = deliver::Sink::start(
                    cfg.clone(),
                    context.clone(),
                    client.clone(),
                    dead_letter.clone(),
                    self.metrics.alert_sink(&cfg.name),
                    self.closing.subscribe(),
                );
                let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
                Arc::new(sink)
            }));
        }
        *running = Some(Running { policy: policy.alerts.clone(), list: list.clone() });
        list
    }

    fn alert(&self, draft: Draft, test: bool, keep: usize) -> Arc<Alert> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let alert = Arc::new(Alert {
            id: format!("alr-{}-{n:06}", self.epoch),
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            draft,
            test,
            deliveries: Mutex::default(),
        });
        let mut ring = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        ring.push_back(alert.clone());
        while ring.len() > keep.max(1) {
            ring.pop_front();
        }
        alert
    }

    /// Keeps `draft` in the ring and queues it to every sink that takes it.
    pub fn dispatch(&self, policy: &Policy, draft: Draft) -> Arc<Alert> {
        let alert = self.alert(draft, false, policy.alerts.recent);
        let d = &alert.draft;
        tracing::info!(alert = %alert.id, event = %d.event, severity = d.severity.as_str(), summary = %d.summary, "alert");
        for sink in self.sinks(policy) {
            if sink.config.wants(&d.event, Some(d.severity)) {
                sink.offer(&alert);
            }
        }
        alert
    }

    /// Sends a test alert through sink `name` now (one attempt, not queued, not retried) and
    /// returns what the receiver answered.
    pub async fn test(
        &self,
        policy: &Policy,
        name: &str,
        actor: &str,
        on_behalf_of: Option<&str>,
    ) -> Result<(Arc<Alert>, Outcome), TestError> {
        let sinks = self.sinks(policy);
        let Some(sink) = sinks.iter().find(|s| s.config.name == name) else {
            let names: Vec<&str> = sinks.iter().map(|s| s.config.name.as_str()).collect();
            return Err(TestError::Unknown(
                name.to_owned(),
                if names.is_empty() { "none configured ([[alerts.sinks]])".into() } else { names.join(", ") },
            ));
        };
        let client = self.client().map_err(TestError::Client)?;
        let mut fields = Map::new();
        fields.insert("sink".into(), json!(name));
        fields.insert("actor".into(), json!(actor));
        if let Some(b) = on_behalf_of {
            fields.insert("on_behalf_of".into(), json!(b));
        }
        let draft = Draft {
            event: "test".into(),
            severity: crate::config::incidents::IncidentSeverity::Sev4,
            summary: format!("firebreak test alert through sink {name} (sent by {actor}); no action needed"),
            fields,
            dedup_key: format!("firebreak-test-{}", self.next.load(Ordering::Relaxed)),
            resolve: false,
        };
        let alert = self.alert(draft, true, policy.alerts.recent);
        let out = deliver::attempt_once(&sink.config, &sink.context, &client, &alert).await;
        let status = match (out.error.as_deref(), out.status) {
            (None, Some(s)) if (200..300).contains(&s) => "sent".to_owned(),
            (None, Some(s)) => format!("HTTP {s}"),
            (Some(e), _) => e.to_owned(),
            (None, None) => "not sent".to_owned(),
        };
        alert.delivery(name, &status);
        Ok((alert, out))
    }

    /// On shutdown: gives the queued alerts up to `grace` to go out, then ends every sink's task,
    /// which writes what it still holds (the delivery in progress included) to the dead-letter
    /// file, so no accepted alert is lost silently.
    pub async fn close(&self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let queued = || {
            let running = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
            running
                .as_ref()
                .map_or(0, |r| r.list.iter().map(|s| s.metrics.queued.load(Ordering::Relaxed).max(0)).sum::<i64>())
        };
        while queued() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.closing.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            // Writing the dead letters is local file I/O; bounded anyway.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
    }

    /// The newest `limit` alerts, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let ring = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().take(limit).map(|a| a.listed()).collect()
    }

    /// Each sink's name, type, events and counters.
    pub fn sink_status(&self, policy: &Policy) -> Vec<Value> {
        policy
            .alerts
            .sinks
            .iter()
            .map(|s| {
                let m = self.metrics.alert_sink(&s.name);
                json!({
                    "name": s.name,
                    "type": s.kind.as_str(),
                    "events": s.events,
                    "min_severity": s.min_severity.as_str(),
                    "sent": m.sent.load(Ordering::Relaxed),
                    "failed": m.failed.load(Ordering::Relaxed),
                    "retried": m.retried.load(Ordering::Relaxed),
                    "dropped": m.dropped.load(Ordering::Relaxed),
                    "queue_depth": m.queued.load(Ordering::Relaxed).max(0),
                    "queue": s.queue,
                })
            })
            .collect()
    }
}
