//! The writer's side of fleet mode's audit shipper (`fleet::shipper`): after each successful write
//! the writer offers the bytes it appended as a [`Chunk`] to a queue bounded in bytes. A full queue
//! drops the chunk (counted): every record is in the JSONL, and the shipper catches up from there.
//! The writer never waits and, in single-node mode (no handle set), does nothing but one check.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// Records appended by one write of the writer: whole lines, in seq order.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The first record's seq.
    pub first_seq: u64,
    /// The last record's seq.
    pub last_seq: u64,
    /// Offset in the trail of the first line.
    pub offset: u64,
    /// The lines as written (each ends with `\n`).
    pub bytes: bytes::Bytes,
}

/// Counters shared by both sides.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes sent and not yet received.
    queued: AtomicUsize,
    /// The trail's last written seq.
    written_seq: AtomicU64,
    /// Chunks dropped because the queue was full.
    overflows: AtomicU64,
}

/// The writer's end: [`ShipperHandle::offer`] never blocks.
#[derive(Debug, Clone)]
pub struct ShipperHandle {
    tx: mpsc::Sender<Chunk>,
    limit: usize,
    shared: Arc<Shared>,
}

/// The shipper's end.
#[derive(Debug)]
pub struct ShipperQueue {
    rx: mpsc::Receiver<Chunk>,
    shared: Arc<Shared>,
}

/// Most chunks queued, whatever their size (the byte bound normally comes first).
const MAX_CHUNKS: usize = 4096;

/// A queue holding at most `limit_bytes` of chunks.
pub fn shipper_channel(limit_bytes: usize) -> (ShipperHandle, ShipperQueue) {
    let (tx, rx) = mpsc::channel(MAX_CHUNKS);
    let shared = Arc::new(Shared::default());
    (ShipperHandle { tx, limit: limit_bytes, shared: shared.clone() }, ShipperQueue { rx, shared })
}

impl ShipperHandle {
    /// Records `last_seq` as written and queues a copy of `bytes`, or drops it (counted) when the
    /// queue is full.
    pub(crate) fn offer(&self, first_seq: u64, last_seq: u64, offset: u64, bytes: &[u8]) {
        self.shared.written_seq.store(last_seq, Ordering::Release);
        let len = bytes.len();
        if self.shared.queued.load(Ordering::Acquire).saturating_add(len) > self.limit {
            self.shared.overflows.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        let chunk = Chunk { first_seq, last_seq, offset, bytes: bytes::Bytes::copy_from_slice(bytes) };
        if self.tx.try_send(chunk).is_err() {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.overflows.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ShipperQueue {
    /// The next chunk; `None` when the writer has stopped.
    pub async fn recv(&mut self) -> Option<Chunk> {
        let c = self.rx.recv().await?;
        self.shared.queued.fetch_sub(c.bytes.len(), Ordering::AcqRel);
        Some(c)
    }

    /// The next chunk if one is queued (never waits).
    pub fn try_recv(&mut self) -> Option<Chunk> {
        let c = self.rx.try_recv().ok()?;
        self.shared.queued.fetch_sub(c.bytes.len(), Ordering::AcqRel);
        Some(c)
    }

    /// The trail's last written seq, as far as the writer reported it (0 before its first write).
    pub fn written_seq(&self) -> u64 {
        self.shared.written_seq.load(Ordering::Acquire)
    }

    /// Chunks dropped so far because the queue was full.
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.load(Ordering::Relaxed)
    }

    /// Bytes queued and not yet received.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_never_blocks() {
        let (h, mut q) = shipper_channel(10);
        h.offer(1, 1, 0, b"0123456\n");
        h.offer(2, 2, 8, b"0123456\n"); // 16 > 10: dropped
        assert_eq!(q.written_seq(), 2);
        assert_eq!(q.overflows(), 1);
        assert_eq!(q.queued_bytes(), 8);
        let c = q.recv().await.expect("chunk");
        assert_eq!((c.first_seq, c.last_seq, c.offset), (1, 1, 0));
        assert_eq!(q.queued_bytes(), 0);
        h.offer(3, 3, 16, b"abc\n");
        assert_eq!(q.recv().await.expect("chunk").first_seq, 3);
    }
}
