//! The replica heartbeat, the live count, and the replica list of `admin fleet`.
