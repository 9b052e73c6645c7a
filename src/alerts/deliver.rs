//! Delivery: one bounded queue and one sender task per sink. An attempt is bounded by the sink's
//! timeout; a failed one (no answer, 408, 425, 429, 5xx) is retried after an exponential backoff
//! with jitter, up to `max_attempts`; then, or at once for an answer no retry will change (another
//! 4xx), the alert goes to the dead-letter file. Nothing here ever waits on the request path: the
//! router only `try_send`s into the queue, and a full queue drops (counted).
//!
//! Errors are described by class (`connect failed`, `timeout`, `HTTP 503`), never with the URL,
//! which for Slack is the credential.

use std::path::PathBuf;
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
        dead_letter: Arc<DeadLetter>,
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
    dead_letter: Arc<DeadLetter>,
    metrics: Arc<AlertSinkMetrics>,
}

/// Where undeliverable alerts go: a JSONL file, rotated to `<file>.1` at `max_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The file.
    pub path: PathBuf,
    /// The size past which it is rotated.
    pub max_bytes: u64,
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
    dead_letter: &DeadLetter,
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

async fn write_dead_letter(dead_letter: &DeadLetter, config: &SinkConfig, alert: &Alert, attempts: u32, error: &str) {
    let line = json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "sink": config.name,
        "type": config.kind.as_str(),
        "attempts": attempts,
        "error": error,
        "alert": alert.to_json(),
    });
    let dead_letter = dead_letter.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        append_rotating(&dead_letter, &bytes)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the alert dead-letter file cannot be written; the alert is lost"),
        Err(e) => tracing::error!(error = %e, "the alert dead-letter write did not run; the alert is lost"),
    }
}

/// Appends `line` to the dead-letter file, fsynced. When it would take the file past `max_bytes`,
/// the file is first renamed to `<file>.1` (replacing the one before): while sinks stay down, the two
/// files hold at most about twice the cap and the newest alerts, instead of filling the disk the
/// audit trail and the state file share. A line longer than the cap still goes into a new file.
fn append_rotating(dead_letter: &DeadLetter, line: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // One writer at a time in this process: two sinks failing together must not both rotate.
    static ONE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_WRITER.lock().unwrap_or_else(|p| p.into_inner());
    let path = &dead_letter.path;
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    if len > 0 && len.saturating_add(line.len() as u64) > dead_letter.max_bytes {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        std::fs::rename(path, &rotated)?;
        tracing::warn!(file = %path.display(), bytes = len, "the alert dead-letter file reached its size limit; rotated to .1 (the one before is replaced)");
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    f.write_all(line)?;
    f.sync_data()
}

/// The client every sink uses: the gateway's outbound client (platform roots), a small pool.
pub fn client(connect_timeout: Duration) -> Result<HttpClient, String> {
    crate::http::outbound::https_client(None, connect_timeout, Duration::from_secs(30), 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_dead_letter_file_rotates_at_its_cap_and_keeps_the_newest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dl = DeadLetter { path: tmp.path().join("dl.jsonl"), max_bytes: 100 };
        let old = tmp.path().join("dl.jsonl.1");
        let line = |i: u8| {
            let mut l = vec![b'a' + i; 39];
            l.push(b'\n');
            l
        };
        let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_default();
        for i in 0..5 {
            append_rotating(&dl, &line(i)).expect("append");
        }
        // 40-byte lines, a 100-byte cap: [0 1] rotate, [2 3] rotate, [4].
        assert_eq!(read(&dl.path), line(4));
        assert_eq!(read(&old), [line(2), line(3)].concat(), "the one before is replaced");
        for p in [&dl.path, &old] {
            let mode = std::fs::metadata(p).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        // A line longer than the cap is not lost: it starts a file of its own.
        let big = vec![b'x'; 300];
        append_rotating(&dl, &big).expect("append");
        assert_eq!((read(&dl.path), read(&old)), (big.clone(), line(4)));
        append_rotating(&dl, &line(7)).expect("append");
        assert_eq!((read(&dl.path), read(&old)), (line(7), big));
    }
}
