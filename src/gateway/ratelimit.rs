//! Per-user rate limits by degradation level: a token bucket per user holding up to one minute's
//! allowance, refilled continuously. Buckets live in a bounded moka cache and expire when idle.
//!
//! [`Limiter`] is what the request path holds: this local limiter in single-node mode, or in fleet
//! mode the fleet-wide bucket in Redis (`fleet::limiter`) with this one as its fallback while Redis
//! is unreachable (at the fleet limit divided by the live replicas).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// The gateway's rate limiter: local, or fleet-wide with a local fallback.
#[derive(Debug)]
pub enum Limiter {
    /// Single-node mode: the local buckets only.
    Local(RateLimiter),
    /// Fleet mode: one bucket per user in Redis; `local` while Redis is unreachable.
    Fleet {
        /// The fleet handle (its Redis connection, status and metrics).
        fleet: Arc<crate::fleet::Fleet>,
        /// The fallback buckets.
        local: RateLimiter,
    },
}

impl Limiter {
    /// Fleet-wide when `fleet` is given, local otherwise.
    pub fn new(fleet: Option<Arc<crate::fleet::Fleet>>) -> Limiter {
        match fleet {
            Some(fleet) => Limiter::Fleet { fleet, local: RateLimiter::default() },
            None => Limiter::Local(RateLimiter::default()),
        }
    }

    /// Takes one token for `user` under a limit of `rpm` per minute, or says how long to wait.
    /// Local: no await point is reached. Fleet: one Redis round trip (bounded by `redis_timeout`),
    /// or the local buckets at `max(1, rpm / live replicas)` when Redis does not answer.
    pub async fn check(&self, user: &str, rpm: u32) -> Result<(), Duration> {
        match self {
            Limiter::Local(l) => l.check(user, rpm),
            Limiter::Fleet { fleet, local } => {
                if rpm == 0 {
                    return Err(Duration::from_secs(60));
                }
                match crate::fleet::limiter::check(fleet, user, rpm).await {
                    Some(r) => r,
                    None => local.check(user, crate::fleet::limiter::fell_back(fleet, rpm)),
                }
            }
        }
    }

    /// Forgets every local bucket (offline replay; the fleet's buckets are shared and kept).
    pub fn clear(&self) {
        match self {
            Limiter::Local(l) | Limiter::Fleet { local: l, .. } => l.clear(),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    buckets: Cache<String, Arc<Mutex<Bucket>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter { buckets: Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(600)).build() }
    }
}

impl RateLimiter {
    /// Takes one token for `user` under a limit of `rpm` per minute, or says how long to wait.
    pub fn check(&self, user: &str, rpm: u32) -> Result<(), Duration> {
        self.check_at(user, rpm, Instant::now())
    }

    /// Forgets every bucket (offline replay: each case starts with a full allowance).
    pub fn clear(&self) {
        self.buckets.invalidate_all();
    }

    fn check_at(&self, user: &str, rpm: u32, now: Instant) -> Result<(), Duration> {
        if rpm == 0 {
            return Err(Duration::from_secs(60));
        }
        let cap = f64::from(rpm);
        let bucket = match self.buckets.get(user) {
            Some(b) => b,
            None => self.buckets.get_with(user.to_owned(), || Arc::new(Mutex::new(Bucket { tokens: cap, last: now }))),
        };
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let per_sec = cap / 60.0;
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - b.tokens) / per_sec).ceil().max(1.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_rpm_then_refuses_then_refills() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.check_at("u", 5, t0).is_ok());
        }
        let wait = l.check_at("u", 5, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(12));
        assert!(l.check_at("other", 5, t0).is_ok(), "users are limited separately");
        assert!(l.check_at("u", 5, t0 + Duration::from_secs(12)).is_ok());
        assert!(l.check_at("u", 0, t0).is_err());
    }

    #[test]
    fn lower_level_limit_clamps_saved_tokens() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.check_at("u", 100, t0).is_ok());
        // Level raised: 99 saved tokens are clamped to the new allowance of 2.
        assert!(l.check_at("u", 2, t0).is_ok());
        assert!(l.check_at("u", 2, t0).is_ok());
        assert!(l.check_at("u", 2, t0).is_err());
    }
}
