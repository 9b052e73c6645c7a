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

impl FleetSettings {
    /// The defaults of every setting with this PostgreSQL URL (for `firebreak fleet --postgres`;
    /// Redis is not used there).
    pub fn for_postgres(postgres: UrlSource) -> FleetSettings {
        FleetSettings {
            postgres,
            redis: UrlSource::Inline(Secret::new("redis://127.0.0.1:6379/0")),
            redis_prefix: "firebreak".into(),
            replica_id: None,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(2),
            redis_timeout: Duration::from_millis(50),
            poll_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(2),
            live_after: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(5),
            pool_size: 2,
            migrate: Migrate::Auto,
            audit_queue_bytes: 8 << 20,
            audit_batch: 500,
            allow_plaintext: true,
        }
    }
}

/// `None` when the section is absent or `enabled = false` (single-node mode).
pub(super) fn compile(raw: Option<&RawFleet>, base: &Path, problems: &mut Problems) -> Option<FleetSettings> {
    let raw = raw?;
    let at = |k: &str| path(["fleet".into(), Seg::from(k)]);
    let mut dur = |v: &Option<String>, key: &str, default: Duration| match v.as_deref().map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(_) => {
            problems.add(
                0,
                at(key),
                format!("[fleet] {key} is not a positive duration"),
                Some("write it like \"2s\" or \"500ms\"".into()),
            );
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
            "[fleet] redis_timeout is longer than 1s",
            Some("it bounds a call on the request path: keep it short (\"50ms\")".into()),
        );
    }
    if poll_interval < Duration::from_millis(100) {
        problems.add(
            0,
            at("poll_interval"),
            "[fleet] poll_interval is shorter than 100ms",
            Some("a poll every few seconds is enough: notifications do the fast path".into()),
        );
    }
    if live_after <= heartbeat_interval {
        problems.add(
            0,
            at("live_after"),
            "[fleet] live_after is not longer than heartbeat_interval",
            Some("a replica must miss several heartbeats before it counts as gone (e.g. 5× the interval)".into()),
        );
    }
    // A disabled section may leave the URLs out; everything it does say is still checked.
    let required = raw.enabled != Some(false);
    let postgres = url_source(
        base,
        "postgres_url",
        &raw.postgres_url,
        &raw.postgres_url_env,
        &raw.postgres_url_file,
        required,
        problems,
    );
    let redis =
        url_source(base, "redis_url", &raw.redis_url, &raw.redis_url_env, &raw.redis_url_file, required, problems);
    let allow_plaintext = raw.allow_plaintext.unwrap_or(false);
    if let Some(UrlSource::Inline(url)) = &postgres {
        check_postgres_url(url.expose(), allow_plaintext, problems);
    }
    if let Some(UrlSource::Inline(url)) = &redis {
        if redis::Client::open(url.expose()).is_err() {
            problems.add(
                0,
                at("redis_url"),
                "[fleet] redis_url is not a Redis URL",
                Some("write it like \"redis://127.0.0.1:6379/0\"".into()),
            );
        }
    }
    let redis_prefix = raw.redis_prefix.clone().unwrap_or_else(|| "firebreak".into());
    if redis_prefix.is_empty()
        || redis_prefix.len() > 64
        || !redis_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        problems.add(
            0,
            at("redis_prefix"),
            "[fleet] redis_prefix must be 1–64 characters of A–Z, a–z, 0–9, _ . -",
            Some("e.g. \"firebreak\"; give each fleet sharing one Redis its own prefix".into()),
        );
    }
    if let Some(id) = &raw.replica_id {
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problems.add(
                0,
                at("replica_id"),
                "[fleet] replica_id must be 1–128 characters with no spaces or control characters",
                Some(
                    "better: leave it out and give each process its own with --replica-id or FIREBREAK_REPLICA_ID"
                        .into(),
                ),
            );
        }
    }
    let pool_size = match raw.pool_size {
        None => 8,
        Some(n @ 1..=256) => n as usize,
        Some(_) => {
            problems.add(
                0,
                at("pool_size"),
                "[fleet] pool_size must be between 1 and 256",
                Some("the default, 8, suits most replicas".into()),
            );
            8
        }
    };
    let audit_batch = match raw.audit_batch {
        None => 500,
        Some(n @ 1..=10_000) => n as usize,
        Some(_) => {
            problems.add(
                0,
                at("audit_batch"),
                "[fleet] audit_batch must be between 1 and 10000",
                Some("the default is 500 rows per INSERT".into()),
            );
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
                "[fleet] audit_queue_bytes is not a size of at least 1KiB",
                Some("write it like \"8MiB\" or \"512KiB\"".into()),
            );
            8 << 20
        }
    };
    let migrate = match raw.migrate.as_deref() {
        None | Some("auto") => Migrate::Auto,
        Some("manual") => Migrate::Manual,
        Some(_) => {
            problems.add(
                0,
                at("migrate"),
                "[fleet] migrate must be \"auto\" or \"manual\"",
                Some("\"manual\" leaves migrations to `firebreak fleet migrate`".into()),
            );
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

/// Exactly one of `key`, `key_env`, `key_file`, each of the right form. The value of an `_env` or
/// `_file` source is not read here (it may not be there at check time); an inline URL is checked
/// by the caller. No problem text ever carries the value itself (it may be a URL with a password).
fn url_source(
    base: &Path,
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
    file: &Option<String>,
    required: bool,
    problems: &mut Problems,
) -> Option<UrlSource> {
    let at = |k: String| path(["fleet".into(), Seg::from(k.as_str())]);
    match (inline, env, file) {
        (Some(u), None, None) => {
            if u.trim().is_empty() {
                problems.add(
                    0,
                    at(key.into()),
                    format!("[fleet] {key} is empty"),
                    Some(format!("write the URL, or use {key}_env / {key}_file")),
                );
                return None;
            }
            Some(UrlSource::Inline(Secret::new(u.as_str())))
        }
        (None, Some(e), None) => {
            let k = format!("{key}_env");
            if e.contains("://") {
                problems.add(
                    0,
                    at(k.clone()),
                    format!("[fleet] {k} holds a URL, not the name of an environment variable"),
                    Some(format!("write the variable's name (e.g. {k} = \"FIREBREAK_{}\") and put the URL in that variable; never put a password in the policy", key.to_ascii_uppercase())),
                );
                return None;
            }
            if !is_env_name(e) {
                problems.add(
                    0,
                    at(k.clone()),
                    format!("[fleet] {k} is not an environment variable name"),
                    Some(
                        "use letters, digits and _, not starting with a digit (e.g. \"FIREBREAK_POSTGRES_URL\")".into(),
                    ),
                );
                return None;
            }
            Some(UrlSource::Source(TokenSource::Env(e.clone())))
        }
        (None, None, Some(f)) => {
            let k = format!("{key}_file");
            if f.contains("://") {
                problems.add(
                    0,
                    at(k.clone()),
                    format!("[fleet] {k} holds a URL, not a file path"),
                    Some(
                        "write the path of a file that holds the URL (relative paths are from the policy's directory)"
                            .into(),
                    ),
                );
                return None;
            }
            if f.trim().is_empty() {
                problems.add(
                    0,
                    at(k.clone()),
                    format!("[fleet] {k} is empty"),
                    Some("write the path of a file that holds the URL".into()),
                );
                return None;
            }
            Some(UrlSource::Source(TokenSource::File(resolve_path(base, f))))
        }
        (None, None, None) => {
            if required {
                problems.add(
                    0,
                    at(key.into()),
                    format!("[fleet] {key} is missing"),
                    Some(format!("set one of {key}, {key}_env or {key}_file")),
                );
            }
            None
        }
        _ => {
            problems.add(
                0,
                at(key.into()),
                format!("[fleet] {key} is given more than once"),
                Some(format!("set exactly one of {key}, {key}_env or {key}_file")),
            );
            None
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The PostgreSQL URL parses, and a remote host without TLS is refused unless permitted. The URL
/// itself never goes into a problem (it may hold a password).
pub fn check_postgres_url(url: &str, allow_plaintext: bool, problems: &mut Problems) {
    let at = path(["fleet".into(), "postgres_url".into()]);
    let config = match url.parse::<tokio_postgres::Config>() {
        Ok(c) => c,
        Err(_) => {
            let hint = if url.contains("sslmode=verify") {
                "sslmode verify-ca / verify-full is not supported yet: see the README's \"Running a fleet\""
            } else {
                "write it like \"postgres://firebreak@127.0.0.1:5432/firebreak\""
            };
            problems.add(0, at, "[fleet] postgres_url is not a PostgreSQL URL", Some(hint.into()));
            return;
        }
    };
    if config.get_hosts().is_empty() {
        problems.add(
            0,
            at,
            "[fleet] postgres_url names no host",
            Some("write it like \"postgres://firebreak@127.0.0.1:5432/firebreak\"".into()),
        );
        return;
    }
    let remote = config.get_hosts().iter().any(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => !is_loopback(name),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => false,
    });
    let tls = matches!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    if tls {
        // This build connects without TLS (the design's first cut line): refuse at check time
        // rather than start a replica that can never reach its database.
        problems.add(
            0,
            at,
            "[fleet] postgres_url asks for TLS (sslmode=require), which this build cannot do yet",
            Some("reach PostgreSQL over loopback or a unix socket (e.g. through a local TLS tunnel), or drop sslmode and set allow_plaintext = true on a trusted network".into()),
        );
        return;
    }
    if remote && !tls && !allow_plaintext {
        problems.add(
            0,
            at,
            "[fleet] postgres_url names a remote host without TLS",
            Some("PostgreSQL holds the switches and canaries, and this build has no TLS to it yet: reach it over loopback (e.g. a local TLS tunnel), or set allow_plaintext = true on a trusted network".into()),
        );
    }
}

/// `localhost`, `127.0.0.0/8`, `::1`.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// SHA-256 over the policy files' texts (length-prefixed, in load order), not their paths: the
/// policy hash replicas compare (`Policy.content_sha256`).
pub(super) fn content_digest(sources: &[super::validate::PolicyFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in sources {
        h.update((s.text.len() as u64).to_be_bytes());
        h.update(s.text.as_bytes());
    }
    hex::encode(h.finalize())
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

    const GOOD: &str =
        "[fleet]\npostgres_url = \"postgres://fb@127.0.0.1:5432/fb\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n";

    fn load(text: &str) -> Result<crate::config::Policy, Vec<crate::config::Located>> {
        crate::config::load_str("t.toml", text, Path::new(".")).map_err(|e| e.0)
    }

    /// The problems of a `[fleet]` section made of GOOD's URLs (unless `extra` sets its own) plus `extra`.
    fn problems(extra: &str) -> Vec<String> {
        let urls = if extra.contains("postgres_url") { "" } else { "postgres_url = \"postgres://fb@127.0.0.1/fb\"\n" };
        let redis = if extra.contains("redis_url") { "" } else { "redis_url = \"redis://127.0.0.1:6379/0\"\n" };
        match load(&format!("[fleet]\n{urls}{redis}{extra}")) {
            Ok(_) => Vec::new(),
            Err(list) => {
                list.iter().map(|l| format!("{} | {}", l.message, l.hint.clone().unwrap_or_default())).collect()
            }
        }
    }

    #[test]
    fn a_good_section_compiles_with_its_defaults() {
        let p = load(GOOD).expect("valid");
        let f = p.fleet.expect("fleet on");
        assert!(matches!(f.postgres, UrlSource::Inline(_)));
        assert_eq!(f.redis_prefix, "firebreak");
        assert_eq!(f.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(f.live_after, Duration::from_secs(10));
        assert_eq!(f.migrate, Migrate::Auto);
        assert_eq!(f.pool_size, 8);
        assert_eq!(f.audit_queue_bytes, 8 << 20);
        assert!(load("").expect("valid").fleet.is_none(), "no section: single node");
        let full = "[fleet]\npostgres_url_env = \"FB_PG\"\nredis_url_file = \"redis.url\"\nredis_prefix = \"h1.test\"\nreplica_id = \"a\"\nconnect_timeout = \"1s\"\nheartbeat_interval = \"500ms\"\nlive_after = \"3s\"\nmigrate = \"manual\"\npool_size = 3\naudit_queue_bytes = \"64KiB\"\naudit_batch = 10\n";
        let f = load(full).expect("valid").fleet.expect("on");
        assert!(matches!(&f.postgres, UrlSource::Source(TokenSource::Env(e)) if e == "FB_PG"));
        assert!(matches!(&f.redis, UrlSource::Source(TokenSource::File(p)) if p.ends_with("redis.url")));
        assert_eq!((f.migrate, f.pool_size, f.audit_batch, f.audit_queue_bytes), (Migrate::Manual, 3, 10, 64 << 10));
        assert_eq!(f.replica_id.as_deref(), Some("a"));
    }

    #[test]
    fn a_disabled_section_is_checked_but_not_used() {
        assert!(load("[fleet]\nenabled = false\n").expect("valid without URLs").fleet.is_none());
        assert!(load(&format!("{GOOD}enabled = false\n")).expect("valid").fleet.is_none());
        assert!(load("[fleet]\nenabled = false\npool_size = 0\n").is_err(), "what it says is still checked");
    }

    #[test]
    fn every_bad_value_is_its_own_problem_with_a_hint() {
        let cases: &[(&str, &str)] = &[
            ("connect_timeout = \"0s\"\n", "is not a positive duration"),
            ("heartbeat_interval = \"soon\"\n", "is not a positive duration"),
            ("redis_timeout = \"2s\"\n", "is longer than 1s"),
            ("poll_interval = \"10ms\"\n", "is shorter than 100ms"),
            ("heartbeat_interval = \"5s\"\nlive_after = \"5s\"\n", "is not longer than heartbeat_interval"),
            ("redis_prefix = \"a b\"\n", "must be 1–64 characters"),
            ("replica_id = \"a b\"\n", "no spaces"),
            ("pool_size = 0\n", "between 1 and 256"),
            ("audit_batch = 0\n", "between 1 and 10000"),
            ("audit_queue_bytes = \"12\"\n", "at least 1KiB"),
            ("migrate = \"sometimes\"\n", "\"auto\" or \"manual\""),
            ("postgres_url = \"not a url\"\n", "is not a PostgreSQL URL"),
            ("redis_url = \"http://x\"\n", "is not a Redis URL"),
            ("postgres_url = \"postgres://fb@127.0.0.1/fb\"\npostgres_url_env = \"X\"\n", "more than once"),
            ("postgres_url_env = \"1X\"\n", "not an environment variable name"),
            ("redis_url_env = \"\"\n", "not an environment variable name"),
            ("postgres_url_file = \"\"\n", "is empty"),
            ("postgres_url = \"postgres://fb@10.1.2.3/fb\"\n", "remote host without TLS"),
            ("postgres_url = \"postgres://fb@127.0.0.1/fb?sslmode=require\"\n", "cannot do yet"),
            ("unknown_key = 1\n", "unknown"),
        ];
        for (extra, want) in cases {
            let found = problems(extra);
            assert!(found.iter().any(|p| p.contains(want)), "{extra:?}: want {want:?}, got {found:?}");
            if *want != "unknown" {
                assert!(found.iter().all(|p| !p.ends_with("| ")), "{extra:?}: a problem without a hint: {found:?}");
            }
        }
        let missing = match load("[fleet]\nredis_url = \"redis://127.0.0.1\"\n") {
            Err(list) => list.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
            Ok(_) => Vec::new(),
        };
        assert!(missing.iter().any(|m| m.contains("is missing")), "{missing:?}");
        assert!(problems("postgres_url = \"postgres://fb@10.1.2.3/fb\"\nallow_plaintext = true\n").is_empty());
    }

    #[test]
    fn no_problem_text_carries_the_url() {
        for extra in [
            "postgres_url = \"postgres://fb:s3cretpw@db.example.com:5432/fb\"\n",
            "postgres_url = \"postgres://fb:s3cretpw@127.0.0.1:5432/fb?sslmode=require\"\n",
            "postgres_url = \"postgresx:/fb:s3cretpw@@\"\n",
            "postgres_url_env = \"postgres://fb:s3cretpw@127.0.0.1/fb\"\n",
            "postgres_url_file = \"postgres://fb:s3cretpw@127.0.0.1/fb\"\n",
            "redis_url = \"rediss:://:s3cretpw@x y\"\n",
            "redis_url_env = \"redis://:s3cretpw@127.0.0.1\"\n",
        ] {
            let found = problems(extra);
            assert!(!found.is_empty(), "{extra:?} should be refused");
            assert!(found.iter().all(|p| !p.contains("s3cretpw")), "{extra:?} leaked into {found:?}");
        }
        let f = load("[fleet]\npostgres_url = \"postgres://fb:s3cretpw@127.0.0.1/fb\"\nredis_url = \"redis://:s3cretpw@127.0.0.1\"\n")
            .expect("valid")
            .fleet
            .expect("on");
        assert!(!format!("{f:?}").contains("s3cretpw"), "Debug redacts the URLs");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && is_loopback("::1"));
        assert!(!is_loopback("db.internal") && !is_loopback("10.0.0.5"));
    }
}
