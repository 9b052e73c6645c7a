//! The PostgreSQL pool, the LISTEN connection's config, and the schema migrations
//! (`sql/*.sql`, applied in one transaction under an advisory lock; idempotent).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::FleetError;
use crate::config::fleet::FleetSettings;

/// The migrations this binary knows, in order.
pub const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("sql/001_init.sql"))];

/// The pool and the config the LISTEN connection is made from.
pub struct FleetDb {
    /// Pooled connections (statements, transactions).
    pub pool: Pool,
    /// For connections outside the pool (LISTEN).
    pub config: tokio_postgres::Config,
    /// Bounds `pool.get()`.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for FleetDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetDb").field("pool_status", &self.pool.status()).finish_non_exhaustive()
    }
}

impl FleetDb {
    /// Builds the (lazy) pool: nothing connects yet.
    pub fn new(settings: &FleetSettings, replica_id: &str) -> Result<FleetDb, FleetError> {
        let url = settings.postgres.read().map_err(FleetError::Unavailable)?;
        let mut config: tokio_postgres::Config =
            url.expose().parse().map_err(|_| FleetError::Db("[fleet] postgres_url is not a PostgreSQL URL".into()))?;
        let ms = settings.statement_timeout.as_millis();
        config
            .application_name(format!("firebreak:{replica_id}"))
            .connect_timeout(settings.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .options(format!(
                "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout=5000"
            ));
        let mgr =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| FleetError::Db(format!("cannot build the PostgreSQL pool: {e}")))?;
        Ok(FleetDb { pool, config, connect_timeout: settings.connect_timeout })
    }

    /// A pooled connection, or `Unavailable` within the connect timeout.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, FleetError> {
        self.pool.get().await.map_err(|e| FleetError::Unavailable(pool_error(&e)))
    }
}

/// A pool error in words, without the URL.
fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Timeout(_) => "timed out".into(),
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => other.to_string(),
    }
}

/// A PostgreSQL error in words (the server's message when there is one).
pub fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}
