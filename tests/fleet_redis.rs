//! Fleet mode's Redis counters against the real Redis at 127.0.0.1:6379 (design §7): the
//! rate-limit and trigger-window scripts under concurrency, and the fallback to local counting
//! while Redis is unreachable (a closed port; a relay that is cut, then restored).
//!
//! Every test uses its own key prefix `h3_<pid>_<n>` and deletes its keys at the end.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firebreak::config::fleet::{FleetSettings, Migrate, UrlSource};
use firebreak::config::Secret;
use firebreak::fleet::windows::{Count, Hit, WindowCounter};
use firebreak::fleet::Fleet;
use firebreak::gateway::ratelimit::{Limiter, RateLimiter};
use firebreak::incident::window::Windows;

use common::fleet::TcpGate;

const REDIS: &str = "127.0.0.1:6379";

fn prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("h3_{}_{}", std::process::id(), N.fetch_add(1, Relaxed))
}

/// A fleet handle on `redis` (its PostgreSQL side is never used here: it does not connect).
fn fleet(redis: &str, prefix: &str, redis_timeout: Duration) -> Arc<Fleet> {
    let settings = FleetSettings {
        postgres: UrlSource::Inline(Secret::new("postgres://postgres@127.0.0.1:5432/postgres")),
        redis: UrlSource::Inline(Secret::new(format!("redis://{redis}/"))),
        redis_prefix: prefix.into(),
        replica_id: None,
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(2),
        redis_timeout,
        poll_interval: Duration::from_secs(5),
        heartbeat_interval: Duration::from_secs(5),
        live_after: Duration::from_secs(15),
        wait_timeout: Duration::from_secs(5),
        pool_size: 2,
        migrate: Migrate::Manual,
        audit_queue_bytes: 1 << 20,
        audit_batch: 100,
        allow_plaintext: false,
    };
    Fleet::new(Arc::new(settings), format!("{prefix}-replica")).expect("fleet handle")
}

/// Deletes every key under `prefix:` (the test's own).
async fn cleanup(prefix: &str) {
    let client = redis::Client::open(format!("redis://{REDIS}/")).expect("client");
    let mut c = client.get_multiplexed_async_connection().await.expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut c).await.expect("keys");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut c).await.expect("del");
    }
}

fn hit(trigger: &str, key: &str, count: Count, threshold: u64) -> Hit {
    Hit {
        trigger: trigger.into(),
        key: key.into(),
        count,
        window: Duration::from_secs(60),
        threshold,
        rule: "r".into(),
        unless: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ratelimit_script_allows_exactly_rpm_under_concurrency() {
    let p = prefix();
    let f = fleet(REDIS, &p, Duration::from_secs(2));
    assert!(f.redis.ping(&f.status.redis_up).await, "redis at {REDIS} answers");
    let tasks: Vec<_> = (0..15)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { firebreak::fleet::limiter::check(&f, "alice", 5).await })
        })
        .collect();
    let mut allowed = 0;
    let mut waits = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Some(Ok(())) => allowed += 1,
            Some(Err(d)) => waits.push(d),
            None => panic!("redis did not answer"),
        }
    }
    assert_eq!(allowed, 5, "exactly rpm pass in a burst");
    assert_eq!(waits.len(), 10);
    assert!(waits.iter().all(|d| *d == Duration::from_secs(12)), "retry after ≈ 12 s: {waits:?}");
    // The script's own answer, in ms: ≈ 12 s less the time since the burst.
    let mut c = redis::Client::open(format!("redis://{REDIS}/"))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let (ok, retry): (i64, i64) = f
        .redis
        .ratelimit
        .key(firebreak::fleet::limiter::bucket_key(&f, "alice"))
        .arg(5)
        .arg(1)
        .invoke_async(&mut c)
        .await
        .expect("script");
    assert_eq!(ok, 0);
    assert!((10_000..=12_000).contains(&retry), "retry_ms {retry}");
    // Users are limited apart; a user id of any shape gets a bounded key.
    let odd = format!("{}:*\u{0} ü", "x".repeat(300));
    assert_eq!(firebreak::fleet::limiter::check(&f, &odd, 5).await, Some(Ok(())));
    assert!(firebreak::fleet::limiter::bucket_key(&f, &odd).len() < p.len() + 80);
    assert_eq!(f.metrics.redis_fallback_ratelimit.load(Relaxed), 0);
    assert!(f.status.redis_up.load(Relaxed));
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn window_script_fires_once_for_11_concurrent_adds_at_threshold_10() {
    let p = prefix();
    let f = fleet(REDIS, &p, Duration::from_secs(2));
    assert!(f.redis.ping(&f.status.redis_up).await);
    let counter = Arc::new(WindowCounter::new(Some(f.clone()), Windows::new(100)));
    let tasks: Vec<_> = (0..11)
        .map(|_| {
            let c = counter.clone();
            tokio::spawn(
                async move { c.add_all(&[hit("sustained_injection_campaign", "bob", Count::Sum(1), 10)]).await },
            )
        })
        .collect();
    let mut fired = 0;
    let mut sums = Vec::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.len(), 1);
        sums.push(r[0].0);
        fired += usize::from(r[0].1);
    }
    sums.sort_unstable();
    assert_eq!(fired, 1, "exactly one firing: {sums:?}");
    assert_eq!(sums, (1..=11).collect::<Vec<u64>>(), "each add saw one more");
    // It re-armed: the next add counts from 1. Distinct labels count once; several hits, one call.
    let label = firebreak::incident::window::label("injection:x");
    let hits = [
        hit("sustained_injection_campaign", "bob", Count::Sum(1), 10),
        hit("anomalous_probing", "bob", Count::Distinct(label), 2),
        hit("anomalous_probing", "bob", Count::Distinct(label), 2),
        hit("bulk_data_extraction", "bob", Count::Sum(7), 5),
        hit("credential_leakage_confirmed", "bob", Count::Sum(1), 0),
    ];
    let r = counter.add_all(&hits).await;
    assert_eq!(r, vec![(1, false), (1, false), (1, false), (7, true), (0, true)]);
    // The listing reads the windows back (a session only by its digest).
    let spe = Hit { key: "sess-secret-1".into(), ..hit("system_prompt_exposure", "", Count::Sum(1), 3) };
    assert_eq!(counter.add_all(&[spe]).await, vec![(1, false)]);
    let policy = firebreak::config::load_str("<built-in defaults>", "", std::path::Path::new(".")).expect("policy");
    let mut listed = counter.counts(&policy).await;
    listed.sort();
    let names: Vec<(&str, &str, u64)> = listed.iter().map(|(t, p, n)| (t.as_str(), p.as_str(), *n)).collect();
    assert!(names.contains(&("sustained_injection_campaign", "bob", 1)), "{names:?}");
    assert!(names.contains(&("anomalous_probing", "bob", 1)), "{names:?}");
    let digest = firebreak::audit::session_digest("sess-secret-1");
    assert!(
        names.iter().any(|(t, p, _)| *t == "system_prompt_exposure" && *p == format!("session {digest}")),
        "{names:?}"
    );
    assert!(!listed.iter().any(|(_, p, _)| p.contains("sess-secret")), "a session id is never a key");
    // Corroboration: distinct sources per trigger, fleet-wide; the third distinct tenant fires.
    let trigger = policy.incidents.triggers.get("bulk_data_extraction").expect("trigger").clone();
    let who = |tenant: &str| firebreak::incident::Target { tenant: Some(tenant.into()), ..Default::default() };
    let mut p3 = policy.clone();
    std::sync::Arc::make_mut(&mut p3.incidents).corroboration = 3;
    let c = |t: &str| firebreak::incident::corroboration_hit(&p3, &trigger, &who(t), None);
    assert_eq!(counter.corroborate(&c("acme")).await, Some((1, false)));
    assert_eq!(counter.corroborate(&c("acme")).await, Some((1, false)), "the same tenant counts once");
    assert_eq!(counter.corroborate(&c("globex")).await, Some((2, false)));
    assert_eq!(counter.corroborate(&c("initech")).await, Some((3, true)));
    assert_eq!(counter.corroborate(&c("initech")).await, Some((1, false)), "re-armed");
    assert_eq!(f.metrics.redis_fallback_window.load(Relaxed), 0);
    cleanup(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_on_a_closed_port_falls_back_to_the_divided_limit() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let p = prefix();
    let f = fleet(&format!("127.0.0.1:{port}"), &p, Duration::from_millis(200));
    f.status.live_replicas.store(3, Relaxed);
    let limiter = Limiter::Fleet { fleet: f.clone(), local: RateLimiter::default() };
    let started = Instant::now();
    let mut allowed = 0;
    for _ in 0..8 {
        allowed += usize::from(limiter.check("carol", 6).await.is_ok());
    }
    assert_eq!(allowed, 2, "6/min over 3 live replicas: 2 per replica while Redis is down");
    assert_eq!(f.metrics.redis_fallback_ratelimit.load(Relaxed), 8);
    assert!(!f.status.redis_up.load(Relaxed));
    assert!(started.elapsed() < Duration::from_secs(3), "no waiting while down: {:?}", started.elapsed());
    // 5/min over 3 replicas is 1/min each (never 0); a 0 limit is still a refusal.
    assert!(limiter.check("dave", 5).await.is_ok());
    assert!(limiter.check("dave", 5).await.is_err());
    assert!(limiter.check("erin", 0).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_falls_back_while_redis_is_cut_then_resumes() {
    let relay = TcpGate::new(REDIS.parse().expect("redis address"));
    let p = prefix();
    let f = fleet(&relay.addr().to_string(), &p, Duration::from_secs(1));
    f.status.live_replicas.store(2, Relaxed);
    let limiter = Limiter::Fleet { fleet: f.clone(), local: RateLimiter::default() };
    // Up: counted in Redis (4/min fleet-wide).
    for _ in 0..4 {
        assert!(limiter.check("frank", 4).await.is_ok());
    }
    assert!(limiter.check("frank", 4).await.is_err(), "the fleet bucket is empty");
    assert_eq!(f.metrics.redis_fallback_ratelimit.load(Relaxed), 0);
    assert!(f.status.redis_up.load(Relaxed));

    relay.cut();
    // Down: each check counts locally at 4 / 2 live = 2 per replica (a fresh local bucket).
    let mut allowed = 0;
    for _ in 0..5 {
        allowed += usize::from(limiter.check("frank", 4).await.is_ok());
    }
    assert_eq!(allowed, 2, "the local fallback at the divided limit");
    assert_eq!(f.metrics.redis_fallback_ratelimit.load(Relaxed), 5);
    assert!(!f.status.redis_up.load(Relaxed));
    // Trigger windows fall back too, with the divided threshold (3 / 2 → 1: the second add fires).
    let counter = WindowCounter::new(Some(f.clone()), Windows::new(100));
    let h = [hit("sustained_injection_campaign", "frank", Count::Sum(1), 3)];
    assert_eq!(counter.add_all(&h).await, vec![(1, false)]);
    assert_eq!(counter.add_all(&h).await, vec![(2, true)]);
    assert_eq!(f.metrics.redis_fallback_window.load(Relaxed), 2);

    relay.restore();
    // Resumes within the backoff (≤ 5 s): a check answered by Redis again (the fleet bucket of
    // "grace" is full, so it passes) without counting a fallback.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = f.metrics.redis_fallback_ratelimit.load(Relaxed);
        let r = limiter.check("grace", 100).await;
        if f.metrics.redis_fallback_ratelimit.load(Relaxed) == before {
            assert!(r.is_ok());
            break;
        }
        assert!(Instant::now() < deadline, "redis never resumed after the relay was restored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(f.status.redis_up.load(Relaxed));
    // Counted in Redis again: 1/min is 1/min fleet-wide, not the fallback's.
    let after = f.metrics.redis_fallback_ratelimit.load(Relaxed);
    assert!(limiter.check("heidi", 1).await.is_ok());
    assert!(limiter.check("heidi", 1).await.is_err());
    assert_eq!(f.metrics.redis_fallback_ratelimit.load(Relaxed), after, "answered by Redis");
    cleanup(&p).await;
}
