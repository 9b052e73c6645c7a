//! Switch batches as one PostgreSQL transaction (compare-and-set on the version, the audit record in
//! the same transaction, NOTIFY), the LISTEN + poll loop that brings every replica to the newest
//! snapshot, and `?wait=all`.
