//! Admission: the gateway-wide concurrency limit, each user's share of it, and the budget of
//! request-body bytes buffered at once.
//!
//! Why hand-written rather than tower's `ConcurrencyLimit` / `LoadShed`: the limits are taken
//! inside the pipeline, after routing (global) and after identity (per user: the principal is only
//! known once the key is checked), and one permit must outlive the handler to cover a stream's
//! life (the pump task holds it). A tower layer wraps the whole service call and knows neither.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::GatewayError;

/// The budget is counted in blocks of this many bytes (a semaphore takes at most `u32` permits at
/// once; blocks also keep the number of semaphore operations per body small).
const BLOCK: usize = 64 << 10;

/// The gateway's admission limits.
#[derive(Debug)]
pub struct Admission {
    global: Arc<Semaphore>,
    /// In-flight requests per user. Entries are never removed: users come from the policy, so the
    /// table is bounded, and a request never allocates for a user seen before.
    users: RwLock<HashMap<String, Arc<AtomicU32>>>,
    buffered: Arc<Semaphore>,
}

/// A request's admission: a slot of the global limit and, once the principal is known, of its
/// user's. Held until the response is complete (by the stream pump for a stream).
#[derive(Debug)]
pub struct Permit {
    _global: OwnedSemaphorePermit,
    user: Option<Arc<AtomicU32>>,
}

/// Request-body bytes counted against the buffered-bytes budget; returned when dropped.
#[derive(Debug)]
pub struct Buffered {
    permit: Option<OwnedSemaphorePermit>,
    blocks: usize,
}

impl Admission {
    /// `max_concurrent` requests at once, `max_buffered` request-body bytes held at once.
    pub fn new(max_concurrent: usize, max_buffered: usize) -> Admission {
        Admission {
            global: Arc::new(Semaphore::new(max_concurrent)),
            users: RwLock::new(HashMap::new()),
            buffered: Arc::new(Semaphore::new(blocks(max_buffered).min(Semaphore::MAX_PERMITS))),
        }
    }

    /// A slot of the global limit, or 503 at once (shed load before any work).
    pub fn admit(&self) -> Result<Permit, GatewayError> {
        let global = self.global.clone().try_acquire_owned().map_err(|_| GatewayError::Overloaded)?;
        Ok(Permit { _global: global, user: None })
    }

    /// Takes one of `user`'s `limit` in-flight slots into `permit`, or 429: one principal can
    /// hold at most its level's share, never the whole gateway.
    pub fn hold_for_user(&self, permit: &mut Permit, user: &str, limit: u32) -> Result<(), GatewayError> {
        let count = self.counter(user);
        // Increment only below the limit (a failed attempt leaves no trace to undo).
        let taken = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1));
        if taken.is_err() {
            return Err(GatewayError::UserInFlight(limit));
        }
        permit.user = Some(count);
        Ok(())
    }

    fn counter(&self, user: &str) -> Arc<AtomicU32> {
        if let Some(c) = self.users.read().unwrap_or_else(|p| p.into_inner()).get(user) {
            return c.clone();
        }
        let mut w = self.users.write().unwrap_or_else(|p| p.into_inner());
        w.entry(user.to_owned()).or_default().clone()
    }

    /// Reserves `bytes` more of the buffered-bytes budget for `held` (rounded up to whole blocks),
    /// or 503: a request whose body does not fit now is refused, never buffered anyway.
    pub fn reserve(&self, held: &mut Buffered, bytes: usize) -> Result<(), GatewayError> {
        let want = blocks(bytes);
        if want <= held.blocks {
            return Ok(());
        }
        let more = u32::try_from(want - held.blocks).map_err(|_| GatewayError::BufferBudget)?;
        let p = self.buffered.clone().try_acquire_many_owned(more).map_err(|_| GatewayError::BufferBudget)?;
        match &mut held.permit {
            Some(h) => h.merge(p),
            None => held.permit = Some(p),
        }
        held.blocks = want;
        Ok(())
    }

    /// Request-body bytes buffered right now (whole blocks), for tests and metrics.
    pub fn buffered_bytes(&self, max_buffered: usize) -> usize {
        blocks(max_buffered).saturating_sub(self.buffered.available_permits()) * BLOCK
    }
}

impl Buffered {
    /// Nothing reserved yet.
    pub fn none() -> Buffered {
        Buffered { permit: None, blocks: 0 }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(c) = &self.user {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn blocks(bytes: usize) -> usize {
    bytes.div_ceil(BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_its_share_and_gets_it_back() {
        let a = Admission::new(10, 1 << 20);
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut p = a.admit().expect("global slot");
            a.hold_for_user(&mut p, "alice", 3).expect("within alice's share");
            held.push(p);
        }
        let mut p = a.admit().expect("global slot");
        assert!(matches!(a.hold_for_user(&mut p, "alice", 3), Err(GatewayError::UserInFlight(3))));
        a.hold_for_user(&mut p, "bob", 3).expect("bob is not starved by alice");
        held.pop();
        let mut p = a.admit().expect("global slot");
        a.hold_for_user(&mut p, "alice", 3).expect("a finished request frees alice's slot");
    }

    #[test]
    fn the_global_limit_sheds_and_a_dropped_permit_frees_its_slot() {
        let a = Admission::new(1, 1 << 20);
        let p = a.admit().expect("first");
        assert!(matches!(a.admit(), Err(GatewayError::Overloaded)));
        drop(p);
        a.admit().expect("freed");
    }

    #[test]
    fn the_byte_budget_refuses_what_does_not_fit_and_returns_what_is_dropped() {
        let a = Admission::new(10, 4 * BLOCK);
        let mut one = Buffered::none();
        a.reserve(&mut one, 1).expect("one block");
        a.reserve(&mut one, 3 * BLOCK).expect("grows to three");
        assert_eq!(a.buffered_bytes(4 * BLOCK), 3 * BLOCK);
        let mut two = Buffered::none();
        assert!(matches!(a.reserve(&mut two, 2 * BLOCK), Err(GatewayError::BufferBudget)));
        a.reserve(&mut two, BLOCK).expect("the last block");
        drop(one);
        assert_eq!(a.buffered_bytes(4 * BLOCK), BLOCK);
        a.reserve(&mut two, 4 * BLOCK).expect("fits once the other body is gone");
    }
}
