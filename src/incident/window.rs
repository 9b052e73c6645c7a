//! Sliding windows per (trigger, principal), bounded in memory: a moka cache of at most `capacity`
//! principals (least recently used evicted), each holding at most `threshold + 1` events, since no
//! trigger needs to count further than the point where it fires.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

#[derive(Debug, Default)]
struct Events(VecDeque<(Instant, u64, u64)>);

/// Counters over sliding windows.
#[derive(Debug, Clone)]
pub struct Windows {
    cache: Cache<String, Arc<Mutex<Events>>>,
}

/// How events are counted.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    /// Sum of weights.
    Sum(u64),
    /// Distinct labels (e.g. signatures).
    Distinct(u64),
}

/// One trigger event of an exchange, before counting: what the engine's pure signal extraction
/// gives ([`crate::incident::Engine::signals`]) and a window counter (local, or the fleet's in
/// Redis) counts.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The trigger's name.
    pub trigger: String,
    /// The principal counted: the user, `user\0server` for an MCP server trigger, or for
    /// `system_prompt_exposure` the session (`user:<user>` without one). Never sent raw to Redis
    /// when it is a session.
    pub key: String,
    /// How the event counts.
    pub count: Count,
    /// The trigger's window.
    pub window: Duration,
    /// The trigger fires when the count exceeds this (0: at once, nothing counted).
    pub threshold: u64,
    /// The rule id named as evidence when it fires.
    pub rule: String,
    /// Counted only if the hit at this index did not fire (a partial prompt extraction is not
    /// counted when the same exchange exposed the prompt).
    pub unless: Option<usize>,
}

impl Hit {
    /// The key of this hit's window in [`Windows`]: `<trigger>\0<principal>`.
    pub fn local_key(&self) -> String {
        format!("{}\u{0}{}", self.trigger, self.key)
    }
}

/// A signature's label for [`Count::Distinct`]: the first 8 bytes of its SHA-256, the same in
/// every binary (a fleet's replicas compare labels in Redis).
pub fn label(signature: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(signature.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A threshold divided among `divide` replicas counting apart (at least 1; 0 stays 0: it fires at
/// once): each replica fires sooner, never later.
pub fn divided(threshold: u64, divide: u64) -> u64 {
    if threshold == 0 || divide <= 1 {
        threshold
    } else {
        (threshold / divide).max(1)
    }
}

impl Windows {
    /// Counts every hit of one exchange in order, and returns each one's count and whether it
    /// fired (a window that fires is reset, so it re-arms). A hit with threshold 0 fires without
    /// counting; a hit whose `unless` fired is skipped (`(0, false)`). `divide` > 1 divides the
    /// thresholds (the fleet's per-replica fallback).
    pub fn add_all(&self, hits: &[Hit], now: Instant, divide: u64) -> Vec<(u64, bool)> {
        let mut out: Vec<(u64, bool)> = Vec::with_capacity(hits.len());
        for h in hits {
            if h.unless.is_some_and(|j| out.get(j).is_some_and(|r| r.1)) {
                out.push((0, false));
                continue;
            }
            let threshold = divided(h.threshold, divide);
            if threshold == 0 {
                out.push((0, true));
                continue;
            }
            let wkey = h.local_key();
            let cap = usize::try_from(threshold.saturating_add(1)).unwrap_or(usize::MAX);
            let n = self.add(&wkey, now, h.window, h.count, cap);
            if n > threshold {
                self.reset(&wkey);
                out.push((n, true));
            } else {
                out.push((n, false));
            }
        }
        out
    }

    /// At most `capacity` principals are tracked at once; idle ones are dropped after a week (no
    /// window is longer).
    pub fn new(capacity: u64) -> Windows {
        Windows { cache: Cache::builder().max_capacity(capacity).time_to_idle(Duration::from_secs(7 * 86400)).build() }
    }

    /// Records an event for `key` at `now` and returns the count within `window`; `cap` bounds the
    /// events kept (at least 1).
    pub fn add(&self, key: &str, now: Instant, window: Duration, count: Count, cap: usize) -> u64 {
        let slot = match self.cache.get(key) {
            Some(s) => s,
            None => self.cache.get_with(key.to_owned(), Default::default),
        };
        let mut ev = slot.lock().unwrap_or_else(|p| p.into_inner());
        while ev.0.front().is_some_and(|(t, _, _)| now.saturating_duration_since(*t) >= window) {
            ev.0.pop_front();
        }
        match count {
            Count::Sum(w) => ev.0.push_back((now, w.max(1), 0)),
            Count::Distinct(label) => {
                ev.0.retain(|(_, _, l)| *l != label);
                ev.0.push_back((now, 1, label));
            }
        }
        while ev.0.len() > cap.max(1) {
            ev.0.pop_front();
        }
        ev.0.iter().map(|(_, w, _)| *w).sum()
    }

    /// Every tracked key with its count at `now` within the window `window_of` gives it (keys it
    /// gives none are skipped; empty counts left out). Read-only: for `firebreak admin alerts`.
    pub fn counts(&self, now: Instant, window_of: impl Fn(&str) -> Option<Duration>) -> Vec<(String, u64)> {
        self.cache
            .iter()
            .filter_map(|(k, slot)| {
                let w = window_of(&k)?;
                let ev = slot.lock().unwrap_or_else(|p| p.into_inner());
                let n: u64 =
                    ev.0.iter().filter(|(t, _, _)| now.saturating_duration_since(*t) < w).map(|(_, n, _)| *n).sum();
                (n > 0).then(|| (k.as_ref().clone(), n))
            })
            .collect()
    }

    /// Forgets `key` (after its trigger fired, so it re-arms).
    pub fn reset(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Principals tracked now (after pending evictions).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_window_and_slides() {
        let w = Windows::new(100);
        let t0 = Instant::now();
        let h = Duration::from_secs(3600);
        for i in 0..3 {
            assert_eq!(w.add("u", t0 + Duration::from_secs(i), h, Count::Sum(1), 10), i + 1);
        }
        // 59 min 59 s after the first event all three still count; at 1 h the first falls out.
        assert_eq!(w.add("u", t0 + Duration::from_secs(3599), h, Count::Sum(1), 10), 4);
        assert_eq!(w.add("u", t0 + Duration::from_secs(3600), h, Count::Sum(1), 10), 4);
        assert_eq!(w.add("other", t0, h, Count::Sum(2), 10), 2, "principals count separately");
    }

    #[test]
    fn distinct_labels_and_cap() {
        let w = Windows::new(100);
        let t0 = Instant::now();
        let h = Duration::from_secs(60);
        assert_eq!(w.add("u", t0, h, Count::Distinct(1), 4), 1);
        assert_eq!(w.add("u", t0, h, Count::Distinct(1), 4), 1, "the same signature counts once");
        assert_eq!(w.add("u", t0, h, Count::Distinct(2), 4), 2);
        for l in 3..100 {
            assert!(w.add("u", t0, h, Count::Distinct(l), 4) <= 4, "never more than the cap kept");
        }
    }

    fn hit(trigger: &str, threshold: u64, unless: Option<usize>) -> Hit {
        Hit {
            trigger: trigger.into(),
            key: "u".into(),
            count: Count::Sum(1),
            window: Duration::from_secs(60),
            threshold,
            rule: "r".into(),
            unless,
        }
    }

    #[test]
    fn add_all_fires_rearms_skips_and_divides() {
        let w = Windows::new(100);
        let t0 = Instant::now();
        let hits = [hit("a", 2, None), hit("b", 0, None), hit("c", 1, Some(0))];
        assert_eq!(w.add_all(&hits, t0, 1), vec![(1, false), (0, true), (1, false)]);
        assert_eq!(w.add_all(&hits, t0, 1), vec![(2, false), (0, true), (2, true)]);
        // `a` fires, so `c` is skipped; `a` re-arms.
        assert_eq!(w.add_all(&hits, t0, 1), vec![(3, true), (0, true), (0, false)]);
        assert_eq!(w.add_all(&hits[..1], t0, 1), vec![(1, false)]);
        // Divided among 3 replicas: a threshold of 2 becomes 1 (never 0).
        let w = Windows::new(100);
        assert_eq!(w.add_all(&hits[..1], t0, 3), vec![(1, false)]);
        assert_eq!(w.add_all(&hits[..1], t0, 3), vec![(2, true)]);
        assert_eq!(divided(10, 3), 3);
        assert_eq!(divided(0, 3), 0);
    }

    #[test]
    fn labels_are_stable() {
        // The first 8 bytes of SHA-256("abc") = ba7816bf8f01cfea: fixed across binaries.
        assert_eq!(label("abc"), 0xba78_16bf_8f01_cfea);
        assert_ne!(label("a"), label("b"));
    }

    #[test]
    fn memory_is_bounded_under_many_principals() {
        let w = Windows::new(1_000);
        let t0 = Instant::now();
        for i in 0..20_000 {
            w.add(&format!("user-{i}"), t0, Duration::from_secs(60), Count::Sum(1), 3);
        }
        let n = w.len();
        assert!(n <= 1_000, "{n} principals tracked with a capacity of 1000");
        assert!(n > 0);
    }
}
