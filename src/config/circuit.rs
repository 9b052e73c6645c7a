//! `[circuit]` and the per-target `[upstreams.NAME.circuit]` / `[mcp_servers.NAME.circuit]` tables:
//! when a circuit breaker stops sending requests to a failing upstream or MCP server, and when it
//! tries again. The runtime side is the top-level `circuit` module.
//!
//! Off unless the policy has a `[circuit]` section or the target has a `circuit` table of its own.

use std::time::Duration;

use serde::Deserialize;

use super::compile::path;
use super::validate::{Problems, Seg};

/// A `circuit` table as written (the global one and each override have the same keys).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuit {
    /// `false` turns breakers off (globally, or for one target).
    pub enabled: Option<bool>,
    /// Failures in a row that open the circuit.
    pub consecutive_failures: Option<i64>,
    /// Share of failed requests in the window (0 < r ≤ 1) that opens it, once `min_requests` were seen.
    pub failure_rate: Option<f64>,
    /// The sliding window of the failure rate (e.g. "30s").
    pub window: Option<String>,
    /// Requests in the window before the failure rate counts.
    pub min_requests: Option<i64>,
    /// How long an open circuit refuses requests before half-open probes (e.g. "15s").
    pub open_for: Option<String>,
    /// Real requests let through while half-open; all must succeed to close it.
    pub half_open_probes: Option<i64>,
    /// Whether an upstream's 429 counts as a failure (default false: it is alive, just busy).
    pub count_429: Option<bool>,
}

/// The compiled limits of one target's breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitSettings {
    /// Failures in a row that open the circuit.
    pub consecutive_failures: u32,
    /// Failure rate over the window that opens it (with at least `min_requests` requests).
    pub failure_rate: f64,
    /// The failure-rate window.
    pub window: Duration,
    /// Requests in the window before the rate counts.
    pub min_requests: u32,
    /// Time open before probing.
    pub open_for: Duration,
    /// Probes while half-open.
    pub half_open_probes: u32,
    /// Whether 429 counts as a failure.
    pub count_429: bool,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(30),
            min_requests: 10,
            open_for: Duration::from_secs(15),
            half_open_probes: 2,
            count_429: false,
        }
    }
}

/// The global table, compiled: its settings, and whether it turns breakers on for every target.
#[derive(Debug, Clone, Copy)]
pub struct Global {
    enabled: bool,
    settings: CircuitSettings,
}

/// Compiles `[circuit]` (absent: breakers off, built-in defaults for targets that turn theirs on).
pub(super) fn global(raw: Option<&RawCircuit>, problems: &mut Problems) -> Global {
    match raw {
        None => Global { enabled: false, settings: CircuitSettings::default() },
        Some(r) => Global {
            enabled: r.enabled.unwrap_or(true),
            settings: settings(r, CircuitSettings::default(), 0, &path(["circuit".into()]), problems),
        },
    }
}

/// A target's breaker settings (None: no breaker), from the global table and its own override
/// (`at` is the path of the override table).
pub(super) fn target(
    global: &Global,
    own: Option<&RawCircuit>,
    file: usize,
    at: &[Seg],
    problems: &mut Problems,
) -> Option<CircuitSettings> {
    match own {
        None => global.enabled.then_some(global.settings),
        Some(r) => {
            let s = settings(r, global.settings, file, at, problems);
            r.enabled.unwrap_or(true).then_some(s)
        }
    }
}

fn settings(
    r: &RawCircuit,
    base: CircuitSettings,
    file: usize,
    at: &[Seg],
    problems: &mut Problems,
) -> CircuitSettings {
    let key = |k: &str| {
        let mut p = at.to_vec();
        p.push(k.into());
        p
    };
    let mut s = base;
    let mut count = |v: Option<i64>, name: &str, max: i64, out: &mut u32| {
        if let Some(n) = v {
            if (1..=max).contains(&n) {
                *out = n as u32;
            } else {
                problems.add(file, key(name), format!("{name} must be between 1 and {max}, not {n}"), None);
            }
        }
    };
    count(r.consecutive_failures, "consecutive_failures", 1_000_000, &mut s.consecutive_failures);
    count(r.min_requests, "min_requests", 1_000_000, &mut s.min_requests);
    count(r.half_open_probes, "half_open_probes", 1_000, &mut s.half_open_probes);
    if let Some(rate) = r.failure_rate {
        if rate > 0.0 && rate <= 1.0 {
            s.failure_rate = rate;
        } else {
            problems.add(
                file,
                key("failure_rate"),
                format!("failure_rate must be more than 0 and at most 1, not {rate}"),
                Some("a share of the requests in the window, e.g. 0.5".into()),
            );
        }
    }
    let mut duration = |v: &Option<String>, name: &str, min: Duration, out: &mut Duration| {
        let Some(text) = v else { return };
        match humantime::parse_duration(text) {
            Ok(d) if d >= min && d <= Duration::from_secs(24 * 3600) => *out = d,
            Ok(_) => problems.add(
                file,
                key(name),
                format!("{name} `{text}` is out of range"),
                Some(format!("between {} and 24h", humantime::format_duration(min))),
            ),
            Err(_) => problems.add(
                file,
                key(name),
                format!("{name} `{text}` is not a duration"),
                Some("write e.g. \"30s\", \"500ms\" or \"2m\"".into()),
            ),
        }
    };
    duration(&r.window, "window", Duration::from_millis(100), &mut s.window);
    duration(&r.open_for, "open_for", Duration::from_millis(10), &mut s.open_for);
    if let Some(b) = r.count_429 {
        s.count_429 = b;
    }
    s
}

/// A route's `fallback`: a declared upstream other than the route's own, speaking the route's API;
/// and the route's upstream must have a breaker, or the fallback would never be used.
pub(super) fn check_fallback(
    api: crate::protocol::Api,
    primary: &str,
    fallback: &str,
    upstreams: &std::collections::BTreeMap<String, std::sync::Arc<super::Upstream>>,
    file: usize,
    at: &[Seg],
    problems: &mut Problems,
) {
    use super::UpstreamKind;
    use crate::protocol::Api;
    if upstreams.get(primary).is_some_and(|u| u.circuit.is_none()) {
        problems.add(
            file,
            at.to_vec(),
            format!("upstream `{primary}` has no circuit breaker, so its fallback would never be used"),
            Some("add a [circuit] section (or [upstreams.NAME.circuit]) to the policy".into()),
        );
    }
    let Some(fb) = upstreams.get(fallback) else {
        problems.add(
            file,
            at.to_vec(),
            format!("unknown fallback upstream `{fallback}`"),
            Some(format!("upstreams declared: {}", upstreams.keys().cloned().collect::<Vec<_>>().join(", "))),
        );
        return;
    };
    if fallback == primary {
        problems.add(
            file,
            at.to_vec(),
            "the fallback is the route's own upstream",
            Some("name another upstream".into()),
        );
    }
    let fits = matches!(
        (api, fb.kind),
        (_, UpstreamKind::Scripted) | (Api::OpenAi, UpstreamKind::OpenAi) | (Api::Anthropic, UpstreamKind::Anthropic)
    );
    if !fits {
        problems.add(
            file,
            at.to_vec(),
            format!("fallback upstream `{fallback}` does not speak the {api} API"),
            Some("a fallback serves the same API as the route's upstream".into()),
        );
    }
}
