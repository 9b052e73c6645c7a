//! Fleet-wide rate limits (a token bucket in one Redis Lua script) with a per-replica fallback
//! (the limit divided by the live replicas) while Redis is unreachable.
//!
//! The limiter the request path holds is `gateway::ratelimit::Limiter` (local or fleet); this is
//! its fleet half: the Redis call and the fallback limit. The bucket is `<prefix>:rl:<user>` (the
//! user id escaped and bounded by [`key_segment`]), a hash `{tokens, ts}` on Redis's clock, with the
//! single-node bucket's semantics: capacity `rpm`, refilled continuously, clamped when the limit
//! lowers.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::redis_conn::key_segment;
use super::Fleet;

/// The bucket key of `user`.
pub fn bucket_key(fleet: &Fleet, user: &str) -> String {
    fleet.redis.key(&format!("rl:{}", key_segment(user)))
}

/// Takes one token from `user`'s fleet-wide bucket at `rpm` (> 0). `None` when Redis could not
/// answer (the caller falls back to [`fallback_rpm`] locally and counts it).
pub async fn check(fleet: &Fleet, user: &str, rpm: u32) -> Option<Result<(), Duration>> {
    let key = bucket_key(fleet, user);
    let script = &fleet.redis.ratelimit;
    let (allowed, retry_ms): (i64, i64) = fleet
        .redis
        .call(
            &fleet.status.redis_up,
            |mut cm| async move { script.key(&key).arg(rpm).arg(1).invoke_async(&mut cm).await },
        )
        .await?;
    Some(if allowed == 1 {
        Ok(())
    } else {
        // Whole seconds, at least one, as the local limiter answers.
        let ms = u64::try_from(retry_ms).unwrap_or(0);
        Err(Duration::from_secs(ms.div_ceil(1000).max(1)))
    })
}

/// The per-replica limit while Redis is down: the fleet limit divided by the live replicas,
/// rounded down but never below 1/min (stricter than the fleet limit, never looser: fail closed).
pub fn fallback_rpm(rpm: u32, live_replicas: u32) -> u32 {
    // The trigger windows' division: 0 stays 0, otherwise at least 1.
    let per = crate::incident::window::divided(u64::from(rpm), u64::from(live_replicas));
    u32::try_from(per).unwrap_or(rpm)
}

/// The fallback limit for `rpm` on this replica now, counting the fallback.
pub fn fell_back(fleet: &Fleet, rpm: u32) -> u32 {
    fleet.metrics.redis_fallback_ratelimit.fetch_add(1, Relaxed);
    fallback_rpm(rpm, fleet.status.live_replicas.load(Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_divides_and_never_goes_below_one() {
        assert_eq!(fallback_rpm(60, 1), 60);
        assert_eq!(fallback_rpm(60, 3), 20);
        assert_eq!(fallback_rpm(5, 3), 1);
        assert_eq!(fallback_rpm(5, 0), 5);
        assert_eq!(fallback_rpm(1, 10), 1);
        assert_eq!(fallback_rpm(0, 2), 0, "a zero limit stays a refusal");
    }
}
