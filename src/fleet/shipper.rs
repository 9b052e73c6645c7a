//! The audit shipper: every record of the local hash-chained JSONL goes to the `audit_records` table
//! (at least once, idempotent on (replica id, seq)) from a bounded queue that never blocks the
//! request path, catching up from the JSONL after an overflow or an outage.
