//! The `[alerts]` section and its `[[alerts.sinks]]`: where alerts go, which events each sink
//! takes, and how hard delivery tries. Compiled from the main policy file only. Every sink's secret
//! (webhook HMAC secret, Slack webhook URL, PagerDuty routing key) is read when the policy is
//! compiled, so `firebreak check` and a reload report a missing one, and no sink runs without it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::compile::{path, positive, resolve_path};
use super::incidents::IncidentSeverity;
use super::validate::{Problems, Seg};
use super::{Secret, TokenSource};

/// The events an alert can be about, as named in a sink's `events` (a `prefix.*` glob or `*` takes
/// a whole family). `fleet.replica_lag` is reserved: fleet mode does not exist yet, nothing emits it.
pub const EVENTS: &[&str] = &[
    "incident.opened",
    "incident.joined",
    "incident.escalated",
    "incident.resolved",
    "switch.lockdown",
    "switch.safe_mode",
    "switch.isolate_server",
    "audit.failure",
    "audit.recovered",
    "circuit.opened",
    "circuit.half_open",
    "circuit.closed",
    "anomaly.rule_spike",
    "fleet.replica_lag",
];

/// A sink's events when it names none: everything but `incident.joined` (a busy incident joins
/// often; its opening already paged).
pub const DEFAULT_EVENTS: &[&str] = &[
    "incident.opened",
    "incident.escalated",
    "incident.resolved",
    "switch.*",
    "audit.*",
    "circuit.*",
    "anomaly.*",
    "fleet.*",
];

/// Where PagerDuty's Events API v2 takes events.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Link to the console put in Slack messages and PagerDuty events.
    pub console_url: Option<String>,
    /// JSONL file (0600) of what could not be delivered. Default: beside the state file.
    pub dead_letter_file: Option<String>,
    /// Size at which the dead-letter file is rotated to `<file>.1` (default 64 MiB).
    pub dead_letter_max_bytes: Option<i64>,
    /// Recent alerts kept in memory for `firebreak admin alerts`.
    pub recent: Option<i64>,
    /// A trigger is "close to firing" at this fraction of its threshold (default 0.8).
    pub near_threshold: Option<f64>,
    /// Rule spikes: the window compared with the one before (default 5m).
    pub spike_window: Option<String>,
    /// Rule spikes: how many times the previous window's count (default 3).
    pub spike_factor: Option<f64>,
    /// Rule spikes: fewest events in the window (default 20).
    pub spike_min_events: Option<i64>,
    /// The sinks.
    #[serde(default)]
    pub sinks: Vec<RawSink>,
}

/// One `[[alerts.sinks]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Unique name.
    pub name: Option<String>,
    /// `webhook`, `slack`, `pagerduty` or `otlp`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Destination (webhook, pagerduty, otlp).
    pub url: Option<String>,
    /// Slack: the variable holding the webhook URL.
    pub url_env: Option<String>,
    /// Slack: the file holding the webhook URL.
    pub url_file: Option<String>,
    /// Webhook: the variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// Webhook: the file holding the HMAC secret.
    pub secret_file: Option<String>,
    /// PagerDuty: the variable holding the routing key.
    pub routing_key_env: Option<String>,
    /// PagerDuty: the file holding the routing key.
    pub routing_key_file: Option<String>,
    /// Events taken (names and `family.*`).
    pub events: Option<Vec<String>>,
    /// Incident events below this severity are not sent.
    pub min_severity: Option<String>,
    /// Queue capacity.
    pub queue: Option<i64>,
    /// Delivery attempts.
    pub max_attempts: Option<i64>,
    /// First retry delay.
    pub backoff_ms: Option<i64>,
    /// Longest retry delay.
    pub max_backoff_ms: Option<i64>,
    /// Time for one attempt.
    pub timeout_ms: Option<i64>,
}

/// The dead-letter file's default rotation size: 64 MiB.
pub const DEFAULT_DEAD_LETTER_MAX_BYTES: u64 = 64 << 20;

/// The compiled `[alerts]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsPolicy {
    /// Console link for messages.
    pub console_url: Option<String>,
    /// Dead-letter file (None: beside the state file, decided at start).
    pub dead_letter_file: Option<PathBuf>,
    /// Size at which the dead-letter file is rotated.
    pub dead_letter_max_bytes: u64,
    /// Recent alerts kept.
    pub recent: usize,
    /// Fraction of a threshold at which a trigger is listed as close to firing.
    pub near_threshold: f64,
    /// Rule-spike window.
    pub spike_window: Duration,
    /// Rule-spike factor.
    pub spike_factor: f64,
    /// Rule-spike minimum count.
    pub spike_min_events: u64,
    /// The sinks.
    pub sinks: Vec<SinkConfig>,
}

impl Default for AlertsPolicy {
    fn default() -> Self {
        AlertsPolicy {
            console_url: None,
            dead_letter_file: None,
            dead_letter_max_bytes: DEFAULT_DEAD_LETTER_MAX_BYTES,
            recent: 500,
            near_threshold: 0.8,
            spike_window: Duration::from_secs(300),
            spike_factor: 3.0,
            spike_min_events: 20,
            sinks: Vec::new(),
        }
    }
}

/// What a sink is and its destination (with its secret).
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// Generic JSON POST, signed: `X-Firebreak-Signature: t=<unix>,v1=<hex HMAC-SHA-256>`.
    Webhook {
        /// Where.
        url: http::Uri,
        /// HMAC key.
        secret: Secret,
    },
    /// A Slack incoming webhook (its URL is the credential).
    Slack {
        /// The webhook URL.
        url: Secret,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Events endpoint.
        url: http::Uri,
        /// Integration routing key.
        routing_key: Secret,
    },
    /// One OTLP log record per alert, OTLP/HTTP JSON.
    Otlp {
        /// Logs endpoint (`…/v1/logs`).
        url: http::Uri,
    },
}

impl SinkKind {
    /// `webhook`, `slack`, `pagerduty`, `otlp`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Slack { .. } => "slack",
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Otlp { .. } => "otlp",
        }
    }
}

impl PartialEq for SinkKind {
    fn eq(&self, other: &Self) -> bool {
        use SinkKind::*;
        match (self, other) {
            (Webhook { url: a, secret: s }, Webhook { url: b, secret: t }) => a == b && s.expose() == t.expose(),
            (Slack { url: a }, Slack { url: b }) => a.expose() == b.expose(),
            (PagerDuty { url: a, routing_key: s }, PagerDuty { url: b, routing_key: t }) => {
                a == b && s.expose() == t.expose()
            }
            (Otlp { url: a }, Otlp { url: b }) => a == b,
            _ => false,
        }
    }
}

/// One compiled sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Unique name (`[A-Za-z0-9_-]`, a metric label).
    pub name: String,
    /// Type and destination.
    pub kind: SinkKind,
    /// Event names and `prefix.*` globs it takes.
    pub events: Vec<String>,
    /// Incident events below this severity are not sent (other events are chosen by name only).
    pub min_severity: IncidentSeverity,
    /// Queue capacity; a full queue drops (counted).
    pub queue: usize,
    /// Delivery attempts before the dead-letter file.
    pub max_attempts: u32,
    /// First retry delay (doubles each attempt, with jitter).
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Time for one attempt (connect to response head).
    pub timeout: Duration,
}

impl SinkConfig {
    /// Whether the sink takes `event` (of `severity`, for incident events).
    pub fn wants(&self, event: &str, severity: Option<IncidentSeverity>) -> bool {
        let named = self.events.iter().any(|p| event_matches(p, event));
        let severe = match severity {
            Some(s) if event.starts_with("incident.") => s <= self.min_severity,
            _ => true,
        };
        named && severe
    }
}

/// Whether the filter `pattern` (`*`, `family.*` or a name) takes `event`.
pub fn event_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => pattern == event,
    }
}

fn parse_url(s: &str) -> Option<http::Uri> {
    let u: http::Uri = s.trim().parse().ok()?;
    (matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())).then_some(u)
}

/// Compiles `[alerts]`.
pub(super) fn compile(raw: &RawAlerts, base: &Path, problems: &mut Problems) -> AlertsPolicy {
    let at = |k: &str| path(["alerts".into(), k.into()]);
    let d = AlertsPolicy::default();
    let console_url = raw.console_url.as_ref().and_then(|u| match parse_url(u) {
        Some(_) => Some(u.trim().to_owned()),
        None => {
            problems.add(0, at("console_url"), format!("`{u}` is not an http(s) URL"), None);
            None
        }
    });
    let near_threshold = match raw.near_threshold {
        None => d.near_threshold,
        Some(f) if f > 0.0 && f <= 1.0 => f,
        Some(f) => {
            problems.add(0, at("near_threshold"), format!("must be in (0, 1], not {f}"), Some("e.g. 0.8".into()));
            d.near_threshold
        }
    };
    let spike_factor = match raw.spike_factor {
        None => d.spike_factor,
        Some(f) if f >= 1.0 => f,
        Some(f) => {
            problems.add(0, at("spike_factor"), format!("must be at least 1, not {f}"), Some("e.g. 3".into()));
            d.spike_factor
        }
    };
    let spike_window = match &raw.spike_window {
        None => d.spike_window,
        Some(w) => match humantime::parse_duration(w) {
            Ok(w) if w >= Duration::from_secs(1) => w,
            _ => {
                problems.add(
                    0,
                    at("spike_window"),
                    format!("`{w}` is not a duration of 1s or more"),
                    Some("e.g. \"5m\"".into()),
                );
                d.spike_window
            }
        },
    };
    let mut sinks: Vec<SinkConfig> = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, s) in raw.sinks.iter().enumerate() {
        if let Some(n) = s.name.as_deref() {
            if !names.insert(n) {
                problems.add(
                    0,
                    sink_at(i, "name"),
                    format!("sink `{n}` is declared twice"),
                    Some("give every sink its own name: it labels its metrics and `alerts test` names it".into()),
                );
            }
        }
        if let Some(c) = compile_sink(i, s, base, problems) {
            sinks.push(c);
        }
    }
    AlertsPolicy {
        console_url,
        dead_letter_file: raw.dead_letter_file.as_deref().map(|f| resolve_path(base, f)),
        dead_letter_max_bytes: match raw.dead_letter_max_bytes {
            None => d.dead_letter_max_bytes,
            Some(n) if (4096..=1 << 40).contains(&n) => n as u64,
            Some(n) => {
                problems.add(
                    0,
                    at("dead_letter_max_bytes"),
                    format!("must be between 4096 and 1099511627776 bytes, not {n}"),
                    Some(format!("the default is {DEFAULT_DEAD_LETTER_MAX_BYTES} (64 MiB)")),
                );
                d.dead_letter_max_bytes
            }
        },
        recent: positive(raw.recent, d.recent as u64, 0, at("recent"), problems).min(100_000) as usize,
        near_threshold,
        spike_window,
        spike_factor,
        spike_min_events: positive(raw.spike_min_events, d.spike_min_events, 0, at("spike_min_events"), problems),
        sinks,
    }
}

fn sink_at(i: usize, k: &str) -> Vec<Seg> {
    path(["alerts".into(), "sinks".into(), i.into(), k.into()])
}

/// Reads a secret named by `<what>_env` / `<what>_file`; a problem when neither, both, or unreadable.
fn secret(
    i: usize,
    what: &str,
    env: &Option<String>,
    file: &Option<String>,
    base: &Path,
    kind: &str,
    problems: &mut Problems,
) -> Option<Secret> {
    let source = match (env, file) {
        (Some(_), Some(_)) => {
            problems.add(
                0,
                sink_at(i, &format!("{what}_env")),
                format!("set {what}_env or {what}_file, not both"),
                None,
            );
            return None;
        }
        (Some(e), None) => TokenSource::Env(e.clone()),
        (None, Some(f)) => TokenSource::File(resolve_path(base, f)),
        (None, None) => {
            problems.add(
                0,
                sink_at(i, "type"),
                format!("a {kind} sink needs {what}_env or {what}_file"),
                Some(format!(
                    "name the environment variable or file holding the {what}; it is never written in the policy"
                )),
            );
            return None;
        }
    };
    let key = if env.is_some() { format!("{what}_env") } else { format!("{what}_file") };
    match source.read() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.add(
                0,
                sink_at(i, &key),
                format!("the {what} cannot be read: {e}"),
                Some(
                    "set it where the gateway (and `firebreak check`) runs; a sink never runs without its secret"
                        .into(),
                ),
            );
            None
        }
    }
}

fn compile_sink(i: usize, s: &RawSink, base: &Path, problems: &mut Problems) -> Option<SinkConfig> {
    let name = match s.name.as_deref() {
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Some(n.to_owned())
        }
        Some(n) => {
            problems.add(
                0,
                sink_at(i, "name"),
                format!("`{n}` is not a sink name"),
                Some("use letters, digits, - and _ (at most 64)".into()),
            );
            None
        }
        None => {
            problems.add(0, sink_at(i, "name"), "every sink needs a name", Some("e.g. name = \"oncall\"".into()));
            None
        }
    };
    let kind_name = s.kind.as_deref().unwrap_or("");
    // Keys that do not belong to the type are mistakes (a secret left where nothing reads it).
    let stray = |keys: &[(&str, bool)], problems: &mut Problems| {
        for (k, present) in keys {
            if *present {
                problems.add(
                    0,
                    sink_at(i, k),
                    format!("`{k}` does not apply to a sink of type {kind_name}"),
                    Some("remove it".into()),
                );
            }
        }
    };
    let url_at = |problems: &mut Problems, required: bool| -> Option<http::Uri> {
        match s.url.as_deref() {
            Some(u) => match parse_url(u) {
                Some(u) => Some(u),
                None => {
                    problems.add(
                        0,
                        sink_at(i, "url"),
                        format!("`{u}` is not an http(s) URL"),
                        Some("write the full URL, e.g. https://hooks.example.com/firebreak".into()),
                    );
                    None
                }
            },
            None if required => {
                problems.add(0, sink_at(i, "type"), format!("a sink of type {kind_name} needs a url"), None);
                None
            }
            None => None,
        }
    };
    // A closure, so that a `?` inside stops only the type's checks and the rest is still checked.
    let mut kind = || -> Option<SinkKind> {
        match kind_name {
            "webhook" => {
                stray(
                    &[
                        ("url_env", s.url_env.is_some()),
                        ("url_file", s.url_file.is_some()),
                        ("routing_key_env", s.routing_key_env.is_some()),
                        ("routing_key_file", s.routing_key_file.is_some()),
                    ],
                    problems,
                );
                let url = url_at(problems, true);
                let secret = secret(i, "secret", &s.secret_env, &s.secret_file, base, "webhook", problems);
                Some(SinkKind::Webhook { url: url?, secret: secret? })
            }
            "slack" => {
                stray(
                    &[
                        ("secret_env", s.secret_env.is_some()),
                        ("secret_file", s.secret_file.is_some()),
                        ("routing_key_env", s.routing_key_env.is_some()),
                        ("routing_key_file", s.routing_key_file.is_some()),
                    ],
                    problems,
                );
                if s.url.is_some() {
                    problems.add(
                        0,
                        sink_at(i, "url"),
                        "a Slack webhook URL is a credential: it does not go in the policy",
                        Some("put it in an environment variable or a file and name it with url_env or url_file".into()),
                    );
                    return None;
                }
                let url = secret(i, "url", &s.url_env, &s.url_file, base, "slack", problems)?;
                if parse_url(url.expose()).is_none() {
                    // Never echo the value: it is the credential.
                    problems.add(
                        0,
                        sink_at(i, if s.url_env.is_some() { "url_env" } else { "url_file" }),
                        "the Slack webhook URL it holds is not an http(s) URL",
                        None,
                    );
                    return None;
                }
                Some(SinkKind::Slack { url })
            }
            "pagerduty" => {
                stray(
                    &[
                        ("url_env", s.url_env.is_some()),
                        ("url_file", s.url_file.is_some()),
                        ("secret_env", s.secret_env.is_some()),
                        ("secret_file", s.secret_file.is_some()),
                    ],
                    problems,
                );
                let url = match s.url {
                    Some(_) => url_at(problems, true),
                    None => PAGERDUTY_URL.parse().ok(),
                };
                let key =
                    secret(i, "routing_key", &s.routing_key_env, &s.routing_key_file, base, "pagerduty", problems);
                Some(SinkKind::PagerDuty { url: url?, routing_key: key? })
            }
            "otlp" => {
                stray(
                    &[
                        ("url_env", s.url_env.is_some()),
                        ("url_file", s.url_file.is_some()),
                        ("secret_env", s.secret_env.is_some()),
                        ("secret_file", s.secret_file.is_some()),
                        ("routing_key_env", s.routing_key_env.is_some()),
                        ("routing_key_file", s.routing_key_file.is_some()),
                    ],
                    problems,
                );
                Some(SinkKind::Otlp { url: url_at(problems, true)? })
            }
            "" => {
                problems.add(
                    0,
                    sink_at(i, "type"),
                    "every sink needs a type",
                    Some("webhook, slack, pagerduty or otlp".into()),
                );
                None
            }
            other => {
                problems.add(
                    0,
                    sink_at(i, "type"),
                    format!("unknown sink type `{other}`"),
                    Some("webhook, slack, pagerduty or otlp".into()),
                );
                None
            }
        }
    };
    let kind = kind();
    let events: Vec<String> = match &s.events {
        None => DEFAULT_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
        Some(list) => {
            for (j, e) in list.iter().enumerate() {
                if !EVENTS.iter().any(|known| event_matches(e, known)) {
                    problems.add(
                        0,
                        path(["alerts".into(), "sinks".into(), i.into(), "events".into(), j.into()]),
                        format!("`{e}` names no event"),
                        Some(format!("events: {}, or a family such as \"incident.*\"", EVENTS.join(", "))),
                    );
                }
            }
            list.clone()
        }
    };
    let min_severity = match s.min_severity.as_deref() {
        None => IncidentSeverity::Sev4,
        Some(v) => IncidentSeverity::parse(v).unwrap_or_else(|| {
            problems.add(
                0,
                sink_at(i, "min_severity"),
                format!("`{v}` is not a severity"),
                Some("SEV-1, SEV-2, SEV-3 or SEV-4".into()),
            );
            IncidentSeverity::Sev4
        }),
    };
    let num = |v: Option<i64>, default: u64, k: &str, problems: &mut Problems| {
        positive(v, default, 0, sink_at(i, k), problems)
    };
    let queue = num(s.queue, 1000, "queue", problems).min(1_000_000) as usize;
    let max_attempts = num(s.max_attempts, 5, "max_attempts", problems).min(100) as u32;
    let backoff = Duration::from_millis(num(s.backoff_ms, 500, "backoff_ms", problems));
    let max_backoff = Duration::from_millis(num(s.max_backoff_ms, 60_000, "max_backoff_ms", problems));
    let timeout = Duration::from_millis(num(s.timeout_ms, 5_000, "timeout_ms", problems));
    Some(SinkConfig {
        name: name?,
        kind: kind?,
        events,
        min_severity,
        queue,
        max_attempts,
        backoff,
        max_backoff: max_backoff.max(backoff),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(sinks: &str) -> Result<crate::config::Policy, crate::config::PolicyError> {
        crate::config::load_str("t.toml", sinks, Path::new("."))
    }

    #[test]
    fn filters_take_names_families_and_a_minimum_severity_for_incidents() {
        std::env::set_var("FIREBREAK_UNIT_ALERT_SECRET", "s");
        let p = policy(
            "[[alerts.sinks]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n\
             secret_env = \"FIREBREAK_UNIT_ALERT_SECRET\"\nevents = [\"incident.*\", \"switch.lockdown\"]\nmin_severity = \"SEV-2\"\n\
             [[alerts.sinks]]\nname = \"b\"\ntype = \"otlp\"\nurl = \"http://127.0.0.1:4318/v1/logs\"\n",
        )
        .expect("valid");
        let (a, b) = (&p.alerts.sinks[0], &p.alerts.sinks[1]);
        assert!(a.wants("incident.opened", Some(IncidentSeverity::Sev1)));
        assert!(a.wants("incident.resolved", Some(IncidentSeverity::Sev2)));
        assert!(!a.wants("incident.opened", Some(IncidentSeverity::Sev3)), "below the minimum");
        assert!(a.wants("switch.lockdown", Some(IncidentSeverity::Sev1)));
        assert!(!a.wants("switch.safe_mode", Some(IncidentSeverity::Sev2)));
        // Defaults: everything but joins; the minimum applies to incident events only.
        assert!(b.wants("incident.opened", Some(IncidentSeverity::Sev4)));
        assert!(!b.wants("incident.joined", Some(IncidentSeverity::Sev1)));
        assert!(b.wants("circuit.opened", Some(IncidentSeverity::Sev3)));
        assert_eq!((b.queue, b.max_attempts, b.timeout), (1000, 5, Duration::from_secs(5)));
        assert!(
            format!("{a:?}").contains("<redacted>") && !format!("{a:?}").contains("\"s\""),
            "Debug hides the secret"
        );
    }

    #[test]
    fn keys_of_another_type_and_missing_urls_are_problems() {
        let e = policy(
            "[[alerts.sinks]]\nname = \"o\"\ntype = \"otlp\"\nrouting_key_env = \"X\"\n\
             [[alerts.sinks]]\nname = \"bad name!\"\ntype = \"pagerduty\"\nrouting_key_file = \"/nonexistent/key\"\nqueue = 0\n",
        )
        .expect_err("invalid");
        let text = e.to_string();
        for want in [
            "`routing_key_env` does not apply to a sink of type otlp",
            "a sink of type otlp needs a url",
            "`bad name!` is not a sink name",
            "the routing_key cannot be read",
            "must be a positive number, not 0",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
    }
}
