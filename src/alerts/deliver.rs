//! Delivery: one bounded queue and one sender task per sink. An attempt is bounded by the sink's
//! timeout; a failed one (no answer, 408, 425, 429, 5xx) is retried after an exponential backoff
//! with jitter, up to `max_attempts`; then, or at once for an answer no retry will change (another
//! 4xx), the alert goes to the dead-letter file. Nothing here ever waits on the request path: the
//! router only `try_send`s into the queue, and a full queue drops (counted).
//!
//! Errors are described by class (`connect failed`, `timeout`, `HTTP 503`), never with the URL,
//! which for Slack is the credential.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::event::Alert;
use super::format::{self, Context};
use crate::config::alerts::SinkConfig;
use crate::http::outbound::HttpClient;
use crate::metrics::AlertSinkMetrics;

/// Largest receiver answer read (the rest is dropped).
const MAX_ANSWER: usize = 4096;

/// A sink's running side: its queue and counters.
#[derive(Debug)]
pub struct Sink {
    /// Its configuration.
    pub config: Arc<SinkConfig>,
    /// What its requests need besides the alert.
    pub context: Context,
    /// Its queue.
    tx: mpsc::Sender<Arc<Alert>>,
    /// Its counters.
    pub metrics: Arc<AlertSinkMetrics>,
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The receiver's status (the last request's, when an attempt sends two).
    pub status: Option<u16>,
    /// Why it failed, by class.
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub answer: String,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// Whether another attempt may succeed.
    fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => matches!(s, 408 | 425 | 429) || s >= 500,
        }
    }
}

impl Sink {
    /// Starts the sink's sender task on the current runtime. When `closing` turns true (shutdown),
    /// the task gives up the delivery in progress and writes it, and everything still queued, to
    /// the dead-letter file.
    pub fn start(
        config: SinkConfig,
        context: Context,
        client: HttpClient,
        dead_letter: PathBuf,
        metrics: Arc<AlertSinkMetrics>,
        closing: watch::Receiver<bool>,
    ) -> (Sink, tokio::task::JoinHandle<()>) {
        let config = Arc::new(config);
        let (tx, rx) = mpsc::channel(config.queue);
        let task =
            Task { config: config.clone(), context: context.clone(), client, dead_letter, metrics: metrics.clone() };
        let handle = tokio::spawn(task.run(rx, closing));
        (Sink { config, context, tx, metrics }, handle)
    }

    /// Queues `alert` without waiting; a full queue drops it (counted).
    pub fn offer(&self, alert: &Arc<Alert>) {
        // Counted before the send, so the sender task never takes the gauge below zero.
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        alert.delivery(&self.config.name, "queued");
        if self.tx.try_send(alert.clone()).is_err() {
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
            self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            alert.delivery(&self.config.name, "dropped");
            tracing::warn!(sink = %self.config.name, event = %alert.draft.event, "alert dropped: the sink's queue is full");
        }
    }
}

/// A sink's sender task.
struct Task {
    config: Arc<SinkConfig>,
    context: Context,
    client: HttpClient,
    dead_letter: PathBuf,
    metrics: Arc<AlertSinkMetrics>,
}

/// Resolves once `closing` is true (or its sender is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

impl Task {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Alert>>, mut closing: watch::Receiver<bool>) {
        loop {
            let alert = tokio::select! {
                biased;
                () = closed(&mut closing) => break,
                a = rx.recv() => match a {
                    Some(a) => a,
                    None => return, // the sink was replaced by a reload and its queue is done
                },
            };
            let done = tokio::select! {
                () = deliver(&self.config, &self.context, &self.client, &self.dead_letter, &self.metrics, &alert) => true,
                () = closed(&mut closing) => false,
            };
            if !done {
                self.give_up(
                    &alert,
                    "the gateway shut down during delivery (an attempt may have reached the receiver)",
                )
                .await;
                break;
            }
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        }
        while let Ok(alert) = rx.try_recv() {
            self.give_up(&alert, "the gateway shut down before delivery").await;
        }
    }

    /// Shutdown: the alert goes to the dead-letter file undelivered.
    async fn give_up(&self, alert: &Alert, why: &str) {
        self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        alert.delivery(&self.config.name, "dead_letter");
        self.metrics.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sink = %self.config.name, event = %alert.draft.event, "alert not delivered before shutdown; written to the dead-letter file");
        write_dead_letter(&self.dead_letter, &self.config, alert, 0, why).await;
    }
}

/// Delivers with retries; dead-letters what could not be delivered.
async fn deliver(
    config: &SinkConfig,
    context: &Context,
    client: &HttpClient,
    dead_letter: &Path,
    metrics: &AlertSinkMetrics,
    alert: &Arc<Alert>,
) {
    let mut attempt = 1u32;
    loop {
        let out = attempt_once(config, context, client, alert).await;
        if out.delivered() {
            alert.delivery(&config.name, "sent");
            metrics.sent.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let why = out.error.clone().unwrap_or_else(|| format!("HTTP {}", out.status.unwrap_or(0)));
        if attempt >= config.max_attempts || !out.retryable() {
            alert.delivery(&config.name, "dead_letter");
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sink = %config.name, event = %alert.draft.event, attempts = attempt, error = %why, "alert not delivered; written to the dead-letter file");
            write_dead_letter(dead_letter, config, alert, attempt, &why).await;
            return;
        }
        alert.delivery(&config.name, "retrying");
        tracing::warn!(sink = %config.name, event = %alert.draft.event, attempt, error = %why, "alert delivery failed; retrying");
        tokio::time::sleep(backoff(config, attempt)).await;
        metrics.retried.fetch_add(1, Ordering::Relaxed);
        attempt += 1;
    }
}

/// The pause after failed attempt `n` (1-based): `backoff · 2^(n-1)`, at most `max_backoff`, then
/// a uniformly random share between half and all of it (so sinks failing together do not retry in
/// step).
pub fn backoff(config: &SinkConfig, n: u32) -> Duration {
    let base = config.backoff.saturating_mul(1u32 << (n.saturating_sub(1)).min(20)).min(config.max_backoff);
    base.mul_f64(rand::random_range(0.5..=1.0))
}

/// One attempt: every request of it, each within the sink's timeout.
pub async fn attempt_once(config: &SinkConfig, context: &Context, client: &HttpClient, alert: &Alert) -> Outcome {
    let reqs = match format::requests(config, alert, context) {
        Ok(r) => r,
        Err(e) => return Outcome { status: Some(0), error: Some(e), answer: String::new() },
    };
    let mut last = Outcome { status: None, error: Some("nothing sent".into()), answer: String::new() };
    for req in reqs {
        last = send(client, req, config.timeout).await;
        if !last.delivered() {
            break;
        }
    }
    last
}

async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>, timeout: Duration) -> Outcome {
    let fail = |e: String| Outcome { status: None, error: Some(e), answer: String::new() };
    let fut = async {
        let resp = client.request(req).await.map_err(|e| {
            if e.is_connect() {
                "connect failed".to_owned()
            } else {
                "the request failed (connection closed or protocol error)".to_owned()
            }
        })?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER).collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).chars().take(200).collect::<String>()))
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => fail(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(e)) => fail(e),
        Ok(Ok((status, answer))) => Outcome { status: Some(status), error: None, answer },
    }
}

async fn write_dead_letter(path: &Path, config: &SinkConfig, alert: &Alert, attempts: u32, error: &str) {
    let line = json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "sink": config.name,
        "type": config.kind.as_str(),
        "attempts": attempts,
        "error": error,
        "alert": alert.to_json(),
    });
    let path = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_data()
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the alert dead-letter file cannot be written; the alert is lost"),
        Err(e) => tracing::error!(error = %e, "the alert dead-letter write did not run; the alert is lost"),
    }
}

/// The client every sink uses: the gateway's outbound client (platform roots), a small pool.
pub fn client(connect_timeout: Duration) -> Result<HttpClient, String> {
    crate::http::outbound::https_client(None, connect_timeout, Duration::from_secs(30), 4)
}
