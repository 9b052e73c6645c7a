//! Fleet-wide trigger windows (sliding windows per trigger and principal in Redis, one atomic script
//! that counts and re-arms) with a per-replica fallback while Redis is unreachable.
//!
//! The engine's signal extraction (`incident::Engine::signals`) gives an exchange's hits; a
//! [`WindowCounter`] counts them: locally (single-node mode, the engine's own windows) or in Redis,
//! all hits of one exchange in one round trip (none for an exchange without signals, the common
//! case). Keys: `<prefix>:w:<trigger>:<principal>` (a zset of `"<member>|<weight>"` scored by
//! Redis's clock); a session is never a key, only its digest. Members: `<replica>:<n>` for a sum,
//! the signature's label (hex of the first 8 bytes of its SHA-256) for distinct counting. While
//! Redis does not answer, the engine's windows count with each threshold divided by the live
//! replicas (more sensitive, never less) and `redis_fallback_window` counts the hits.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::incident::window::Windows;
pub use crate::incident::window::{Count, Hit};

use super::redis_conn::{key_segment, unescape_segment};
use super::Fleet;
use crate::config::Policy;

/// Most window keys `counts` reads (the listing is for operators; it stays bounded).
const MAX_LISTED: usize = 10_000;
/// The listing's bound in time.
const LISTING_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts trigger windows: locally, or fleet-wide in Redis with a local fallback.
#[derive(Debug)]
pub enum WindowCounter {
    /// Single-node mode: the engine's windows.
    Local(Windows),
    /// Fleet mode.
    Fleet {
        /// The fleet handle.
        fleet: Arc<Fleet>,
        /// The engine's windows, counted in while Redis is unreachable.
        local: Windows,
        /// The next sum member's number (started from the clock, so a restarted replica does not
        /// reuse a member still in a window).
        seq: AtomicU64,
    },
}

impl WindowCounter {
    /// Fleet-wide when `fleet` is given; `local` are the engine's windows.
    pub fn new(fleet: Option<Arc<Fleet>>, local: Windows) -> WindowCounter {
        match fleet {
            Some(fleet) => {
                let start = super::redis_conn::unix_ms().saturating_mul(1000);
                WindowCounter::Fleet { fleet, local, seq: AtomicU64::new(start) }
            }
            None => WindowCounter::Local(local),
        }
    }

    /// Counts every hit of one exchange, in order: each one's count and whether it fired (a
    /// window that fires re-arms). One Redis round trip (two when a hit depends on another's
    /// outcome), none without hits.
    pub async fn add_all(&self, hits: &[Hit]) -> Vec<(u64, bool)> {
        let (fleet, local, seq) = match self {
            WindowCounter::Local(w) => return w.add_all(hits, Instant::now(), 1),
            WindowCounter::Fleet { fleet, local, seq } => (fleet, local, seq),
        };
        let mut out = vec![(0u64, false); hits.len()];
        let mut done = vec![false; hits.len()];
        for (i, h) in hits.iter().enumerate() {
            if h.threshold == 0 {
                out[i] = (0, true);
                done[i] = true;
            }
        }
        // First the independent hits, then those that depend on one of them.
        for round in 0..2 {
            let batch: Vec<usize> = (0..hits.len())
                .filter(|&i| !done[i])
                .filter(|&i| match hits[i].unless {
                    None => round == 0,
                    Some(j) => round == 1 && done.get(j).copied().unwrap_or(true),
                })
                .collect();
            let mut todo = Vec::with_capacity(batch.len());
            for i in batch {
                done[i] = true;
                if hits[i].unless.is_some_and(|j| out.get(j).is_some_and(|r| r.1)) {
                    continue;
                }
                todo.push(i);
            }
            if todo.is_empty() {
                continue;
            }
            match redis_add(fleet, seq, hits, &todo, |h| window_key(fleet, h)).await {
                Some(counted) => {
                    for (i, r) in todo.iter().zip(counted) {
                        out[*i] = r;
                    }
                }
                None => {
                    fleet.metrics.redis_fallback_window.fetch_add(todo.len() as u64, Relaxed);
                    let live = u64::from(fleet.status.live_replicas.load(Relaxed));
                    let sub: Vec<Hit> = todo.iter().map(|&i| Hit { unless: None, ..hits[i].clone() }).collect();
                    for (i, r) in todo.iter().zip(local.add_all(&sub, Instant::now(), live)) {
                        out[*i] = r;
                    }
                }
            }
        }
        out
    }

    /// Not called by the gateway yet (corroboration is counted per replica, in the engine).
    /// Counts a firing's corroboration event (`incident::corroboration_hit`) fleet-wide, in the
    /// trigger's window `<prefix>:c:<trigger>`: its count and whether it reached the
    /// corroboration (the window then re-arms). `None` in single-node mode or while Redis does not
    /// answer: the engine counts it then (`Engine::corroboration`), at the full corroboration (a
    /// gate on gateway-wide steps is not loosened per replica).
    pub async fn corroborate(&self, hit: &Hit) -> Option<(u64, bool)> {
        let WindowCounter::Fleet { fleet, .. } = self else { return None };
        if hit.threshold == 0 {
            return Some((1, true));
        }
        let key = |h: &Hit| fleet.redis.key(&format!("c:{}", key_segment(&h.trigger)));
        match redis_add(fleet, &AtomicU64::new(0), std::slice::from_ref(hit), &[0], key).await {
            Some(r) => r.first().copied(),
            None => {
                fleet.metrics.redis_fallback_window.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Each (trigger, principal) counted in a trigger window now, with its count (for `admin
    /// alerts` and the near-firing listing). Fleet: read from Redis (SCAN, bounded), or the local
    /// windows when Redis does not answer.
    pub async fn counts(&self, policy: &Policy) -> Vec<(String, String, u64)> {
        match self {
            WindowCounter::Local(w) => crate::incident::window_counts(w, policy),
            WindowCounter::Fleet { fleet, local, .. } => match redis_counts(fleet, policy).await {
                Some(c) => c,
                None => crate::incident::window_counts(local, policy),
            },
        }
    }
}

/// The Redis key of a hit's window. A session (`system_prompt_exposure`) is named by its digest.
pub fn window_key(fleet: &Fleet, h: &Hit) -> String {
    let principal = if h.trigger == "system_prompt_exposure" && !h.key.starts_with("user:") {
        format!("session:{}", crate::audit::session_digest(&h.key))
    } else {
        h.key.clone()
    };
    fleet.redis.key(&format!("w:{}:{}", key_segment(&h.trigger), key_segment(&principal)))
}

/// Runs the window script for `hits[i]`, `i` in `todo` (all with a threshold > 0), each in the
/// window `key_of` names.
async fn redis_add(
    fleet: &Fleet,
    seq: &AtomicU64,
    hits: &[Hit],
    todo: &[usize],
    key_of: impl Fn(&Hit) -> String,
) -> Option<Vec<(u64, bool)>> {
    let mut inv = fleet.redis.window.prepare_invoke();
    for &i in todo {
        let h = &hits[i];
        let (member, weight) = match h.count {
            Count::Sum(w) => (format!("{}:{}", fleet.replica_id, seq.fetch_add(1, Relaxed)), w.max(1)),
            Count::Distinct(label) => (format!("{label:016x}"), 1),
        };
        let window_ms = u64::try_from(h.window.as_millis()).unwrap_or(u64::MAX).max(1);
        inv.key(key_of(h)).arg(window_ms).arg(member).arg(weight).arg(h.threshold).arg(h.threshold.saturating_add(1));
    }
    let inv = &inv;
    let flat: Vec<i64> =
        fleet.redis.call(&fleet.status.redis_up, |mut cm| async move { inv.invoke_async(&mut cm).await }).await?;
    let pairs: Vec<(u64, bool)> =
        flat.chunks(2).map(|p| (u64::try_from(p[0]).unwrap_or(0), p.get(1) == Some(&1))).collect();
    (pairs.len() == todo.len()).then_some(pairs)
}

/// A window key, its members with their scores, and Redis's clock (ms) when they were read.
type Listed = (String, Vec<(String, f64)>, u64);

/// The window counts in Redis: SCAN `<prefix>:w:*` (COUNT 500, at most [`MAX_LISTED`] keys), then
/// every zset's members within its trigger's window on Redis's clock.
async fn redis_counts(fleet: &Fleet, policy: &Policy) -> Option<Vec<(String, String, u64)>> {
    let head = fleet.redis.key("w:");
    let pattern = format!("{head}*");
    let raw: Vec<Listed> = fleet
        .redis
        .call_within(&fleet.status.redis_up, LISTING_TIMEOUT, |mut cm| async move {
            let mut keys: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut cm)
                    .await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 || keys.len() >= MAX_LISTED {
                    break;
                }
            }
            keys.truncate(MAX_LISTED);
            let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut cm).await?;
            let now_ms = secs * 1000 + micros / 1000;
            let mut out = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(500) {
                let mut pipe = redis::pipe();
                for k in chunk {
                    pipe.cmd("ZRANGE").arg(k).arg(0).arg(-1).arg("WITHSCORES");
                }
                let members: Vec<Vec<(String, f64)>> = pipe.query_async(&mut cm).await?;
                out.extend(chunk.iter().cloned().zip(members).map(|(k, m)| (k, m, now_ms)));
            }
            Ok(out)
        })
        .await?;
    let ip = &policy.incidents;
    let mut out = Vec::new();
    for (key, members, now_ms) in raw {
        let Some((trigger, principal)) = key.strip_prefix(&head).and_then(|r| r.split_once(':')) else { continue };
        let Some(trigger) = unescape_segment(trigger) else { continue };
        let Some(t) = ip.triggers.get(&trigger) else { continue };
        let since = now_ms.saturating_sub(u64::try_from(t.window.as_millis()).unwrap_or(u64::MAX)) as f64;
        let n: u64 = members
            .iter()
            .filter(|(_, score)| *score > since)
            .map(|(m, _)| m.rsplit_once('|').and_then(|(_, w)| w.parse::<u64>().ok()).unwrap_or(1))
            .sum();
        if n == 0 {
            continue;
        }
        out.push((trigger, display_principal(principal), n));
    }
    Some(out)
}

/// A window key's principal segment as the listing shows it (the same forms as the local one).
fn display_principal(seg: &str) -> String {
    let Some(p) = unescape_segment(seg) else { return seg.to_owned() };
    if let Some(u) = p.strip_prefix("user:") {
        return u.to_owned();
    }
    if let Some(d) = p.strip_prefix("session:") {
        return format!("session {d}");
    }
    match p.split_once('\u{0}') {
        Some((user, server)) if !server.is_empty() => format!("{user} (server {server})"),
        Some((user, _)) => user.to_owned(),
        None => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_display_as_the_local_listing_does() {
        let seg = |p: &str| key_segment(p);
        assert_eq!(display_principal(&seg("alice")), "alice");
        assert_eq!(display_principal(&seg("user:bob")), "bob");
        assert_eq!(display_principal(&seg("session:0123abcd")), "session 0123abcd");
        assert_eq!(display_principal(&seg("carol\u{0}files")), "carol (server files)");
        assert_eq!(display_principal(&seg("carol\u{0}")), "carol");
        let long = seg(&"x".repeat(300));
        assert_eq!(display_principal(&long), long, "a hashed principal shows as its hash");
    }
}
