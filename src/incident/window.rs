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

impl Windows {
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
