//! The shared Redis connection: lazy, reconnecting, with a short per-call timeout and a backoff
//! while Redis is down (callers then count locally at once, without waiting).

use super::FleetError;
use crate::config::fleet::FleetSettings;

/// The Redis side of the fleet (counters only).
pub struct RedisShared {
    /// The client (does not connect until used).
    pub client: redis::Client,
    /// Every key starts with `<prefix>:`.
    pub prefix: String,
    /// One call's bound.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShared").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisShared {
    /// Builds the client; nothing connects yet.
    pub fn new(settings: &FleetSettings) -> Result<RedisShared, FleetError> {
        let url = settings.redis.read().map_err(FleetError::Unavailable)?;
        let client = redis::Client::open(url.expose())
            .map_err(|_| FleetError::Db("[fleet] redis_url is not a Redis URL".into()))?;
        Ok(RedisShared { client, prefix: settings.redis_prefix.clone(), timeout: settings.redis_timeout })
    }
}
