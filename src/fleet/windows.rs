//! Fleet-wide trigger windows (sliding windows per trigger and principal in Redis, one atomic script
//! that counts and re-arms) with a per-replica fallback while Redis is unreachable.
