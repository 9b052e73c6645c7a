//! Fleet-wide rate limits (a token bucket in one Redis Lua script) with a per-replica fallback
//! (the limit divided by the live replicas) while Redis is unreachable.
