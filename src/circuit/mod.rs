//! Circuit breakers for upstreams and MCP servers: outlier detection on the request path.
//!
//! Each target with a breaker ([`crate::config::circuit::CircuitSettings`]) has one [`Breaker`]:
//!
//! ```text
//!            N failures in a row, or failure rate ≥ r over the window (≥ min requests)
//!   closed ─────────────────────────────────────────────────────────────────────────► open
//!     ▲                                                                              │  ▲
//!     │ every probe succeeded                                          open_for over │  │ a probe failed
//!     └──────────────────────────────── half-open ◄──────────────────────────────────┘  │
//!                                           └───────────────────────────────────────────┘
//! ```
//!
//! While open, requests are refused at once (the caller answers 503 with `Retry-After`, or sends
//! them to the route's fallback); half-open lets `half_open_probes` real requests through.
//!
//! The state is a handful of atomics per target, no lock and no allocation per request: the state
//! word packs the state, a generation (bumped on every transition, so a late answer from an older
//! phase cannot close a newer one) and the time it was entered; the failure-rate window is a ring of
//! ten buckets, each one word (bucket number, requests, failures) updated by compare-and-swap. The
//! caller reports transitions ([`Transition`]) to the audit trail and metrics.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::circuit::CircuitSettings;

mod registry;
pub use registry::{Circuits, SettingsView, Status, Transitions};

/// Buckets of the failure-rate window.
const BUCKETS: u64 = 10;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Requests flow.
    Closed,
    /// Requests are refused.
    Open,
    /// A few probe requests decide.
    HalfOpen,
}

impl State {
    fn from_bits(b: u64) -> State {
        match b & 0xff {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }

    fn bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    /// The audit `event` and the metrics label of a transition to this state.
    pub fn event(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "opened",
            State::HalfOpen => "half_open",
        }
    }

    /// Its name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Why an exchange with a target counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The connection could not be made (refused, unreachable, TLS handshake, connect timeout).
    Connect,
    /// The connection broke before the response head (reset, closed).
    Reset,
    /// No response head within the upstream timeout.
    Timeout,
    /// A 5xx status.
    #[serde(rename = "status_5xx")]
    Status5xx,
    /// A 429 status, where the policy counts it (`count_429`).
    #[serde(rename = "status_429")]
    Status429,
}

impl Failure {
    /// Its name in audit records, metrics and the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::Status5xx => "status_5xx",
            Failure::Status429 => "status_429",
        }
    }

    fn code(self) -> u8 {
        match self {
            Failure::Connect => 1,
            Failure::Reset => 2,
            Failure::Timeout => 3,
            Failure::Status5xx => 4,
            Failure::Status429 => 5,
        }
    }

    fn from_code(c: u8) -> Option<Failure> {
        Some(match c {
            1 => Failure::Connect,
            2 => Failure::Reset,
            3 => Failure::Timeout,
            4 => Failure::Status5xx,
            5 => Failure::Status429,
            _ => return None,
        })
    }

    /// The failure an HTTP status stands for (None: the target is healthy, whatever the caller did).
    pub fn of_status(status: u16, s: &CircuitSettings) -> Option<Failure> {
        match status {
            500..=599 => Some(Failure::Status5xx),
            429 if s.count_429 => Some(Failure::Status429),
            _ => None,
        }
    }
}

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// An AI upstream.
    Upstream,
    /// An MCP server.
    McpServer,
}

impl TargetKind {
    /// Its name (`upstream`, `mcp_server`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Upstream => "upstream",
            TargetKind::McpServer => "mcp_server",
        }
    }
}

/// A change of state, for the audit trail, metrics and logs.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Upstream or MCP server.
    pub kind: TargetKind,
    /// Its name.
    pub target: Arc<str>,
    /// The new state.
    pub to: State,
    /// Why: `consecutive_failures`, `failure_rate`, `open_for_elapsed`, `probe_failed`, `probes_succeeded`.
    pub reason: &'static str,
    /// The last failure's class.
    pub error_class: Option<Failure>,
    /// Failures in a row.
    pub consecutive_failures: u64,
    /// Failure rate over the window (0..1).
    pub failure_rate: f64,
    /// Requests in the window.
    pub requests: u64,
}

/// Refused: the circuit is open (or half-open with every probe slot taken).
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// When a request may be let through again.
    pub retry_after: Duration,
    /// The last failure's class.
    pub error_class: Option<Failure>,
}

// The state word: since_ms (40 bits) << 24 | generation (16 bits) << 8 | state (8 bits).
fn pack_state(state: State, gen: u64, since_ms: u64) -> u64 {
    ((since_ms & 0xff_ffff_ffff) << 24) | ((gen & 0xffff) << 8) | state.bits()
}
fn gen_of(w: u64) -> u64 {
    (w >> 8) & 0xffff
}
fn since_of(w: u64) -> u64 {
    w >> 24
}

// A probe word: generation (16 bits) << 32 | started (16 bits) << 16 | succeeded (16 bits).
fn pack_probes(gen: u64, started: u64, ok: u64) -> u64 {
    ((gen & 0xffff) << 32) | ((started & 0xffff) << 16) | (ok & 0xffff)
}

// A bucket word: bucket number (32 bits) << 32 | requests (16 bits) << 16 | failures (16 bits).
fn pack_bucket(epoch: u64, total: u64, failed: u64) -> u64 {
    ((epoch & 0xffff_ffff) << 32) | ((total & 0xffff) << 16) | (failed & 0xffff)
}

/// One target's breaker.
#[derive(Debug)]
pub struct Breaker {
    kind: TargetKind,
    name: Arc<str>,
    /// The clock's zero (ms offsets in the words are from here).
    base: Instant,
    /// Wall-clock time at `base`, for the status.
    base_wall: SystemTime,
    state: AtomicU64,
    consecutive: AtomicU64,
    buckets: [AtomicU64; BUCKETS as usize],
    probes: AtomicU64,
    last_error: AtomicU8,
    last_error_ms: AtomicU64,
    /// Transitions to open, half-open and closed.
    transitions: [AtomicU64; 3],
}

/// A request let through; report how it went with [`Pass::finish`]. Dropped unfinished (the
/// request ended before the target answered, or for a reason that says nothing of its health), it
/// gives its probe slot back.
#[derive(Debug)]
pub struct Pass {
    breaker: Arc<Breaker>,
    /// The generation of the half-open phase this request probes.
    probe: Option<u64>,
}

impl Breaker {
    fn new(kind: TargetKind, name: &str) -> Breaker {
        Breaker {
            kind,
            name: Arc::from(name),
            base: Instant::now(),
            base_wall: SystemTime::now(),
            state: AtomicU64::new(0),
            consecutive: AtomicU64::new(0),
            buckets: Default::default(),
            probes: AtomicU64::new(0),
            last_error: AtomicU8::new(0),
            last_error_ms: AtomicU64::new(0),
            transitions: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Its state now (an open circuit whose time is up still reads open until a request comes).
    pub fn state(&self) -> State {
        State::from_bits(self.state.load(Ordering::Acquire))
    }

    /// Lets a request through, or refuses it (open, or half-open with every probe slot taken).
    pub fn admit(self: &Arc<Self>, s: &CircuitSettings) -> Result<(Pass, Option<Transition>), Open> {
        let mut transition = None;
        loop {
            let w = self.state.load(Ordering::Acquire);
            match State::from_bits(w) {
                State::Closed => return Ok((Pass { breaker: self.clone(), probe: None }, transition)),
                State::Open => {
                    let now = self.now_ms();
                    let elapsed = now.saturating_sub(since_of(w));
                    let open_for = s.open_for.as_millis() as u64;
                    if elapsed < open_for {
                        return Err(self.open(Duration::from_millis(open_for - elapsed)));
                    }
                    let next = pack_state(State::HalfOpen, gen_of(w) + 1, now);
                    if self.state.compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        self.transitions[1].fetch_add(1, Ordering::Relaxed);
                        transition = Some(self.transition(State::HalfOpen, "open_for_elapsed", s));
                    }
                }
                State::HalfOpen => {
                    let gen = gen_of(w);
                    let mut p = self.probes.load(Ordering::Acquire);
                    loop {
                        let (started, ok) =
                            if (p >> 32) & 0xffff == gen { ((p >> 16) & 0xffff, p & 0xffff) } else { (0, 0) };
                        if started >= u64::from(s.half_open_probes) {
                            // Every probe slot is taken: wait for their answers.
                            return Err(self.open(Duration::from_secs(1)));
                        }
                        match self.probes.compare_exchange_weak(
                            p,
                            pack_probes(gen, started + 1, ok),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => return Ok((Pass { breaker: self.clone(), probe: Some(gen) }, transition)),
                            Err(now) => p = now,
                        }
                    }
                }
            }
        }
    }

    fn open(&self, retry_after: Duration) -> Open {
        Open { retry_after, error_class: Failure::from_code(self.last_error.load(Ordering::Relaxed)) }
    }

    /// Requests and failures in the window now.
    fn window(&self, s: &CircuitSettings) -> (u64, u64) {
        let width = (s.window.as_millis() as u64 / BUCKETS).max(1);
        let epoch = (self.now_ms() / width) & 0xffff_ffff;
        let (mut total, mut failed) = (0, 0);
        for b in &self.buckets {
            let v = b.load(Ordering::Relaxed);
            if epoch.wrapping_sub(v >> 32) & 0xffff_ffff < BUCKETS {
                total += (v >> 16) & 0xffff;
                failed += v & 0xffff;
            }
        }
        (total, failed)
    }

    fn count(&self, s: &CircuitSettings, failed: bool) {
        let width = (s.window.as_millis() as u64 / BUCKETS).max(1);
        let epoch = (self.now_ms() / width) & 0xffff_ffff;
        let b = &self.buckets[(epoch % BUCKETS) as usize];
        let mut v = b.load(Ordering::Relaxed);
        loop {
            let (t, f) = if v >> 32 == epoch { ((v >> 16) & 0xffff, v & 0xffff) } else { (0, 0) };
            let next = pack_bucket(epoch, (t + 1).min(0xffff), (f + u64::from(failed)).min(0xffff));
            match b.compare_exchange_weak(v, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    fn transition(&self, to: State, reason: &'static str, s: &CircuitSettings) -> Transition {
        let (requests, failed) = self.window(s);
        Transition {
            kind: self.kind,
            target: self.name.clone(),
            to,
            reason,
            error_class: Failure::from_code(self.last_error.load(Ordering::Relaxed)),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            failure_rate: rate(requests, failed),
            requests,
        }
    }

    /// Counts a success (None) or a failure of a request let through; the transition it caused.
    fn finish(&self, probe: Option<u64>, failure: Option<Failure>, s: &CircuitSettings) -> Option<Transition> {
        let now = self.now_ms();
        self.count(s, failure.is_some());
        let consecutive = match failure {
            None => {
                self.consecutive.store(0, Ordering::Relaxed);
                0
            }
            Some(f) => {
                self.last_error.store(f.code(), Ordering::Relaxed);
                self.last_error_ms.store(now, Ordering::Relaxed);
                self.consecutive.fetch_add(1, Ordering::Relaxed) + 1
            }
        };
        let w = self.state.load(Ordering::Acquire);
        match (State::from_bits(w), probe, failure) {
            (State::Closed, None, Some(_)) => {
                let reason = if consecutive >= u64::from(s.consecutive_failures) {
                    "consecutive_failures"
                } else {
                    let (total, failed) = self.window(s);
                    if total < u64::from(s.min_requests) || rate(total, failed) < s.failure_rate {
                        return None;
                    }
                    "failure_rate"
                };
                self.to(w, State::Open, now, reason, s)
            }
            (State::HalfOpen, Some(gen), Some(_)) if gen == gen_of(w) => {
                self.to(w, State::Open, now, "probe_failed", s)
            }
            (State::HalfOpen, Some(gen), None) if gen == gen_of(w) => {
                let mut p = self.probes.load(Ordering::Acquire);
                let ok = loop {
                    if (p >> 32) & 0xffff != gen {
                        return None;
                    }
                    let ok = (p & 0xffff) + 1;
                    match self.probes.compare_exchange_weak(p, (p & !0xffff) | ok, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => break ok,
                        Err(now) => p = now,
                    }
                };
                if ok < u64::from(s.half_open_probes) {
                    return None;
                }
                let t = self.to(w, State::Closed, now, "probes_succeeded", s);
                if t.is_some() {
                    // A fresh start: the failures that opened it are history.
                    for b in &self.buckets {
                        b.store(0, Ordering::Relaxed);
                    }
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                t
            }
            _ => None,
        }
    }

    /// Moves from the state word `from` to `to`; None when another request moved it first.
    fn to(&self, from: u64, to: State, now: u64, reason: &'static str, s: &CircuitSettings) -> Option<Transition> {
        let next = pack_state(to, gen_of(from) + 1, now);
        self.state.compare_exchange(from, next, Ordering::AcqRel, Ordering::Acquire).ok()?;
        let i = match to {
            State::Open => 0,
            State::HalfOpen => 1,
            State::Closed => 2,
        };
        self.transitions[i].fetch_add(1, Ordering::Relaxed);
        Some(self.transition(to, reason, s))
    }

    /// Gives back an unused probe slot.
    fn release(&self, gen: u64) {
        let mut p = self.probes.load(Ordering::Acquire);
        loop {
            let started = (p >> 16) & 0xffff;
            if (p >> 32) & 0xffff != gen || started == 0 {
                return;
            }
            let next = pack_probes(gen, started - 1, p & 0xffff);
            match self.probes.compare_exchange_weak(p, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => p = now,
            }
        }
    }

    /// What `admin circuit-status` shows.
    fn status(&self, s: &CircuitSettings) -> Status {
        let w = self.state.load(Ordering::Acquire);
        let now = self.now_ms();
        let (requests, failed) = self.window(s);
        let state = State::from_bits(w);
        let in_state = Duration::from_millis(now.saturating_sub(since_of(w)));
        let last_ms = self.last_error_ms.load(Ordering::Relaxed);
        let last_error = Failure::from_code(self.last_error.load(Ordering::Relaxed));
        let wall = |ms: u64| humantime::format_rfc3339_seconds(self.base_wall + Duration::from_millis(ms)).to_string();
        Status {
            kind: self.kind,
            name: self.name.to_string(),
            enabled: true,
            state: Some(state),
            failure_rate: Some(rate(requests, failed)),
            requests_in_window: Some(requests),
            failures_in_window: Some(failed),
            consecutive_failures: Some(self.consecutive.load(Ordering::Relaxed)),
            last_error,
            last_error_at: last_error.map(|_| wall(last_ms)),
            since: Some(wall(since_of(w))),
            time_in_state_ms: Some(in_state.as_millis() as u64),
            retry_after_ms: (state == State::Open)
                .then(|| (s.open_for.as_millis() as u64).saturating_sub(in_state.as_millis() as u64)),
            transitions: Some(Transitions {
                opened: self.transitions[0].load(Ordering::Relaxed),
                half_open: self.transitions[1].load(Ordering::Relaxed),
                closed: self.transitions[2].load(Ordering::Relaxed),
            }),
            settings: Some(SettingsView::from(s)),
        }
    }
}

fn rate(total: u64, failed: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        failed as f64 / total as f64
    }
}

impl Pass {
    /// Reports how the request went (None: the target answered and is healthy); the transition it
    /// caused, if any.
    pub fn finish(mut self, failure: Option<Failure>, s: &CircuitSettings) -> Option<Transition> {
        let probe = self.probe.take();
        self.breaker.finish(probe, failure, s)
    }

    /// The target's name.
    pub fn target(&self) -> &str {
        &self.breaker.name
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(gen) = self.probe {
            self.breaker.release(gen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CircuitSettings {
        CircuitSettings {
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_requests: 4,
            open_for: Duration::from_millis(30),
            half_open_probes: 2,
            count_429: false,
        }
    }

    fn breaker() -> Arc<Breaker> {
        Arc::new(Breaker::new(TargetKind::Upstream, "u"))
    }

    fn fail(b: &Arc<Breaker>, s: &CircuitSettings) -> Option<Transition> {
        let (p, _) = b.admit(s).expect("admitted");
        p.finish(Some(Failure::Status5xx), s)
    }

    #[test]
    fn consecutive_failures_open_and_a_success_resets_the_count() {
        let (b, mut s) = (breaker(), settings());
        s.min_requests = 100; // the failure rate stays out of it
        assert!(fail(&b, &s).is_none());
        assert!(fail(&b, &s).is_none());
        let (p, _) = b.admit(&s).expect("closed");
        assert!(p.finish(None, &s).is_none());
        assert!(fail(&b, &s).is_none());
        assert!(fail(&b, &s).is_none());
        let t = fail(&b, &s).expect("third in a row opens");
        assert_eq!((t.to, t.reason, t.consecutive_failures), (State::Open, "consecutive_failures", 3));
        assert!(b.admit(&s).is_err(), "open refuses");
    }

    #[test]
    fn failure_rate_opens_once_min_requests_were_seen() {
        let (b, mut s) = (breaker(), settings());
        s.consecutive_failures = 100;
        for _ in 0..2 {
            let (p, _) = b.admit(&s).expect("closed");
            assert!(p.finish(None, &s).is_none());
        }
        assert!(fail(&b, &s).is_none(), "3 requests are fewer than min_requests");
        let t = fail(&b, &s).expect("2 of 4 failed");
        assert_eq!((t.reason, t.requests), ("failure_rate", 4));
    }

    #[test]
    fn half_open_probes_close_it_or_open_it_again() {
        let (b, s) = (breaker(), settings());
        for _ in 0..3 {
            fail(&b, &s);
        }
        assert_eq!(b.state(), State::Open);
        let deadline = Instant::now() + Duration::from_secs(5);
        let (p1, t) = loop {
            if let Ok(x) = b.admit(&s) {
                break x;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(t.expect("half-open").to, State::HalfOpen);
        let (p2, t) = b.admit(&s).expect("second probe");
        assert!(t.is_none());
        assert!(b.admit(&s).is_err(), "only two probes at once");
        drop(p2); // gave its slot back without an answer
        let (p2, _) = b.admit(&s).expect("the slot is free again");
        assert!(p1.finish(None, &s).is_none());
        let t = p2.finish(None, &s).expect("both probes succeeded");
        assert_eq!((t.to, t.reason), (State::Closed, "probes_succeeded"));
        assert_eq!(b.window(&s), (0, 0), "a closed circuit starts afresh");
        // And a failed probe opens it again.
        for _ in 0..3 {
            fail(&b, &s);
        }
        let (p, _) = loop {
            if let Ok(x) = b.admit(&s) {
                break x;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        };
        let t = p.finish(Some(Failure::Timeout), &s).expect("probe failed");
        assert_eq!((t.to, t.reason, t.error_class), (State::Open, "probe_failed", Some(Failure::Timeout)));
        assert!(b.admit(&s).is_err());
    }

    #[test]
    fn a_late_answer_from_an_older_phase_changes_nothing() {
        let (b, s) = (breaker(), settings());
        let (early, _) = b.admit(&s).expect("closed");
        for _ in 0..3 {
            fail(&b, &s);
        }
        // A success that was let through while closed does not close an open circuit.
        assert!(early.finish(None, &s).is_none());
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn statuses_that_count() {
        let mut s = settings();
        assert_eq!(Failure::of_status(503, &s), Some(Failure::Status5xx));
        assert_eq!(Failure::of_status(404, &s), None);
        assert_eq!(Failure::of_status(429, &s), None);
        s.count_429 = true;
        assert_eq!(Failure::of_status(429, &s), Some(Failure::Status429));
    }
}
