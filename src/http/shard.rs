//! Which shard the calling thread is (the shards themselves are `server::shards`): the outbound
//! clients keep one pool per shard, so this sits below both.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

static COUNT: OnceLock<usize> = OnceLock::new();

/// Fixes the number of shards for this process (before the gateway builds its clients). Later
/// calls are ignored; without a call there is one.
pub fn configure(n: usize) {
    let _ = COUNT.set(n.max(1));
}

/// The number of shards (1 unless [`configure`]d).
pub fn count() -> usize {
    COUNT.get().copied().unwrap_or(1)
}

/// The shard the calling thread runs (0 off the shard threads).
pub fn current() -> usize {
    SHARD.with(Cell::get)
}

/// Marks the calling thread as shard `i` (the shard threads call it once, at start).
pub(crate) fn enter(i: usize) {
    SHARD.with(|c| c.set(i));
}
