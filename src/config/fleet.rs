//! `[fleet]` (fleet mode: PostgreSQL as the system of record, Redis for hot counters): raw → checked
//! settings, every problem collected with its key path. No section: single-node mode, nothing
//! connects anywhere. See `docs/design/fleet-mode.md` and the README's "Running a fleet".

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::compile::{path, resolve_path};
use super::validate::{Problems, Seg};
use super::{Secret, TokenSource};

/// `[fleet]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// `false`: the section is parsed and checked, not used.
    pub enabled: Option<bool>,
    /// The PostgreSQL URL (it may carry a password: prefer `postgres_url_env` or `_file`).
    pub postgres_url: Option<String>,
    /// An environment variable holding the PostgreSQL URL.
    pub postgres_url_env: Option<String>,
    /// A file holding the PostgreSQL URL.
    pub postgres_url_file: Option<String>,
    /// The Redis URL.
    pub redis_url: Option<String>,
    /// An environment variable holding the Redis URL.
    pub redis_url_env: Option<String>,
    /// A file holding the Redis URL.
    pub redis_url_file: Option<String>,
    /// Every Redis key starts with `<prefix>:`.
    pub redis_prefix: Option<String>,
    /// This replica's id (better set per process: `serve --replica-id` or `FIREBREAK_REPLICA_ID`).
    pub replica_id: Option<String>,
    /// PostgreSQL and Redis connection attempts.
    pub connect_timeout: Option<String>,
    /// Every PostgreSQL statement (also its lock timeout).
    pub statement_timeout: Option<String>,
    /// One hot-path Redis call; past it the replica counts locally.
    pub redis_timeout: Option<String>,
    /// The switch-version poll (catches lost notifications).
    pub poll_interval: Option<String>,
    /// How often a replica reports itself.
    pub heartbeat_interval: Option<String>,
    /// A replica silent this long is not live.
    pub live_after: Option<String>,
    /// The default wait of `?wait=all`.
    pub wait_timeout: Option<String>,
    /// PostgreSQL connections in the pool.
    pub pool_size: Option<i64>,
    /// `"auto"` (idempotent migrations at start) or `"manual"` (`firebreak fleet migrate`).
    pub migrate: Option<String>,
    /// The audit shipper's in-memory queue, in bytes (`"8MiB"`); past it the shipper catches up from the JSONL.
    pub audit_queue_bytes: Option<String>,
    /// Rows per audit INSERT.
    pub audit_batch: Option<i64>,
    /// Permit a non-loopback PostgreSQL URL without TLS.
    pub allow_plaintext: Option<bool>,
}

/// Where a service URL comes from. The URL is a secret (it may hold a password): never logged.
#[derive(Clone)]
pub enum UrlSource {
    /// Written in the policy.
    Inline(Secret),
    /// An environment variable or a file, read at start.
    Source(TokenSource),
}

impl std::fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            UrlSource::Source(s) => write!(f, "Source({s})"),
        }
    }
}

impl UrlSource {
    /// The URL, read now.
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            UrlSource::Inline(s) => Ok(s.clone()),
            UrlSource::Source(s) => s.read(),
        }
    }
}

/// How the schema is migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrate {
    /// Idempotent migrations at start (under an advisory lock).
    Auto,
    /// Only `firebreak fleet migrate`; a replica on an older schema runs degraded.
    Manual,
}

/// Fleet mode, checked.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The PostgreSQL URL.
    pub postgres: UrlSource,
    /// The Redis URL.
    pub redis: UrlSource,
    /// Redis key prefix (without the colon).
    pub redis_prefix: String,
    /// From the policy; `None`: the flag, the environment, or `hostname:port` at serve time.
    pub replica_id: Option<String>,
    /// Connection attempts.
    pub connect_timeout: Duration,
    /// Every PostgreSQL statement.
    pub statement_timeout: Duration,
    /// One hot-path Redis call.
    pub redis_timeout: Duration,
    /// The switch-version poll.
    pub poll_interval: Duration,
    /// The heartbeat.
    pub heartbeat_interval: Duration,
    /// Silent this long: not live.
    pub live_after: Duration,
    /// Default `?wait=all` timeout.
    pub wait_timeout: Duration,
    /// Pool size.
    pub pool_size: usize,
    /// Migrations.
    pub migrate: Migrate,
    /// The shipper's queue bound in bytes.
    pub audit_queue_bytes: usize,
    /// Rows per INSERT.
    pub audit_batch: usize,
    /// Non-loopback PostgreSQL without TLS permitted.
    pub allow_plaintext: bool,
}

/// `None` when the section is absent or `enabled = false` (single-node mode).
pub(super) fn compile(raw: Option<&RawFleet>, base: &Path, problems: &mut Problems) -> Option<FleetSettings> {
    let raw = raw?;
    let at = |k: &str| path(["fleet".into(), Seg::from(k)]);
    let mut dur = |v: &Option<String>, key: &str, default: Duration| match v.as_deref().map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(_) => {
            problems.add(0, at(key), "is not a positive duration", Some("write it like \"2s\" or \"500ms\"".into()));
            default
        }
    };
    let connect_timeout = dur(&raw.connect_timeout, "connect_timeout", Duration::from_secs(2));
    let statement_timeout = dur(&raw.statement_timeout, "statement_timeout", Duration::from_secs(2));
    let redis_timeout = dur(&raw.redis_timeout, "redis_timeout", Duration::from_millis(50));
    let poll_interval = dur(&raw.poll_interval, "poll_interval", Duration::from_secs(2));
    let heartbeat_interval = dur(&raw.heartbeat_interval, "heartbeat_interval", Duration::from_secs(2));
    let live_after = dur(&raw.live_after, "live_after", Duration::from_secs(10));
    let wait_timeout = dur(&raw.wait_timeout, "wait_timeout", Duration::from_secs(5));
    if redis_timeout > Duration::from_secs(1) {
        problems.add(
            0,
            at("redis_timeout"),
            "is longer than 1s",
            Some("it bounds a call on the request path: keep it short (\"50ms\")".into()),
        );
    }
    if poll_interval < Duration::from_millis(100) {
        problems.add(
            0,
            at("poll_interval"),
            "is shorter than 100ms",
            Some("a poll every few seconds is enough: notifications do the fast path".into()),
        );
    }
    if live_after <= heartbeat_interval {
        problems.add(
            0,
            at("live_after"),
            "is not longer than heartbeat_interval",
            Some("a replica must miss several heartbeats before it counts as gone (e.g. 5× the interval)".into()),
        );
    }
    let postgres =
        url_source(base, "postgres_url", &raw.postgres_url, &raw.postgres_url_env, &raw.postgres_url_file, problems);
    let redis = url_source(base, "redis_url", &raw.redis_url, &raw.redis_url_env, &raw.redis_url_file, problems);
    let allow_plaintext = raw.allow_plaintext.unwrap_or(false);
    if let Some(UrlSource::Inline(url)) = &postgres {
        check_postgres_url(url.expose(), allow_plaintext, problems);
    }
    if let Some(UrlSource::Inline(url)) = &redis {
        if redis::Client::open(url.expose()).is_err() {
            problems.add(
                0,
                at("redis_url"),
                "is not a Redis URL",
                Some("write it like \"redis://127.0.0.1:6379/0\"".into()),
            );
        }
    }
    let redis_prefix = raw.redis_prefix.clone().unwrap_or_else(|| "firebreak".into());
    if redis_prefix.is_empty()
        || redis_prefix.len() > 64
        || !redis_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        problems.add(0, at("redis_prefix"), "must be 1–64 characters of A–Z, a–z, 0–9, _ . -", None);
    }
    if let Some(id) = &raw.replica_id {
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problems.add(0, at("replica_id"), "must be 1–128 characters with no spaces or control characters", None);
        }
    }
    let pool_size = match raw.pool_size {
        None => 8,
        Some(n @ 1..=256) => n as usize,
        Some(_) => {
            problems.add(0, at("pool_size"), "must be between 1 and 256", None);
            8
        }
    };
    let audit_batch = match raw.audit_batch {
        None => 500,
        Some(n @ 1..=10_000) => n as usize,
        Some(_) => {
            problems.add(0, at("audit_batch"), "must be between 1 and 10000", None);
            500
        }
    };
    let audit_queue_bytes = match raw.audit_queue_bytes.as_deref().map(parse_bytes) {
        None => 8 << 20,
        Some(Some(n)) if n >= 1024 => n,
        Some(_) => {
            problems.add(
                0,
                at("audit_queue_bytes"),
                "is not a size of at least 1KiB",
                Some("write it like \"8MiB\" or \"512KiB\"".into()),
            );
            8 << 20
        }
    };
    let migrate = match raw.migrate.as_deref() {
        None | Some("auto") => Migrate::Auto,
        Some("manual") => Migrate::Manual,
        Some(_) => {
            problems.add(0, at("migrate"), "must be \"auto\" or \"manual\"", None);
            Migrate::Auto
        }
    };
    if raw.enabled == Some(false) {
        return None;
    }
    Some(FleetSettings {
        postgres: postgres?,
        redis: redis?,
        redis_prefix,
        replica_id: raw.replica_id.clone(),
        connect_timeout,
        statement_timeout,
        redis_timeout,
        poll_interval,
        heartbeat_interval,
        live_after,
        wait_timeout,
        pool_size,
        migrate,
        audit_queue_bytes,
        audit_batch,
        allow_plaintext,
    })
}

/// Exactly one of `key`, `key_env`, `key_file`.
fn url_source(
    base: &Path,
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
    file: &Option<String>,
    problems: &mut Problems,
) -> Option<UrlSource> {
    let at = |k: String| path(["fleet".into(), Seg::from(k.as_str())]);
    match (inline, env, file) {
        (Some(u), None, None) => Some(UrlSource::Inline(Secret::new(u.as_str()))),
        (None, Some(e), None) if !e.is_empty() => Some(UrlSource::Source(TokenSource::Env(e.clone()))),
        (None, None, Some(f)) if !f.is_empty() => Some(UrlSource::Source(TokenSource::File(resolve_path(base, f)))),
        (None, None, None) => {
            problems.add(0, at(key.into()), "is missing", Some(format!("set one of {key}, {key}_env or {key}_file")));
            None
        }
        _ => {
            problems.add(
                0,
                at(key.into()),
                "is given more than once",
                Some(format!("set exactly one of {key}, {key}_env or {key}_file")),
            );
            None
        }
    }
}

/// The PostgreSQL URL parses, and a remote host without TLS is refused unless permitted. The URL
/// itself never goes into a problem (it may hold a password).
pub fn check_postgres_url(url: &str, allow_plaintext: bool, problems: &mut Problems) {
    let at = path(["fleet".into(), "postgres_url".into()]);
    let config = match url.parse::<tokio_postgres::Config>() {
        Ok(c) => c,
        Err(_) => {
            problems.add(
                0,
                at,
                "is not a PostgreSQL URL",
                Some("write it like \"postgres://firebreak@127.0.0.1:5432/firebreak\"".into()),
            );
            return;
        }
    };
    let remote = config.get_hosts().iter().any(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => !is_loopback(name),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => false,
    });
    let tls = matches!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    if remote && !tls && !allow_plaintext {
        problems.add(
            0,
            at,
            "names a remote host without TLS",
            Some("PostgreSQL holds the switches and canaries: use sslmode=require, or set allow_plaintext = true on a trusted network".into()),
        );
    }
}

/// `localhost`, `127.0.0.0/8`, `::1`.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `"8MiB"`, `"512KiB"`, `"4096"` → bytes.
fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("GiB") {
        (n, 1usize << 30)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("8MiB"), Some(8 << 20));
        assert_eq!(parse_bytes("4KiB"), Some(4096));
        assert_eq!(parse_bytes("12"), Some(12));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && is_loopback("::1"));
        assert!(!is_loopback("db.internal") && !is_loopback("10.0.0.5"));
    }
}
