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

    /// Brings the schema to this binary's version ([`known_version`]): one transaction under the
    /// advisory lock [`MIGRATE_LOCK`], so replicas starting together apply each migration once (the
    /// others wait, then find nothing to do). `by` is recorded in `fleet_schema.applied_by` (a
    /// replica id, or `cli`). Returns the schema version now in the database; a database migrated
    /// by a newer binary is [`FleetError::SchemaTooNew`] and is left as it is.
    pub async fn migrate(&self, by: &str) -> Result<i32, FleetError> {
        self.migrate_from(by).await.map(|(_, now)| now)
    }

    /// [`FleetDb::migrate`], also returning the version found under the lock (before, now): equal
    /// when there was nothing to do.
    pub async fn migrate_from(&self, by: &str) -> Result<(i32, i32), FleetError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.migrate_once(by).await {
                // Another replica holds the lock past lock_timeout (a slow migration): wait for it.
                Err(Retry::LockTimeout(_)) if attempt < 5 => continue,
                Err(Retry::LockTimeout(e)) | Err(Retry::Fail(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    async fn migrate_once(&self, by: &str) -> Result<(i32, i32), Retry> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(stmt)?;
        // "relation … already exists, skipping" notices are not news.
        tx.batch_execute("SET LOCAL client_min_messages = warning").await.map_err(stmt)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await.map_err(stmt)?;
        tx.batch_execute(FLEET_SCHEMA_TABLE).await.map_err(stmt)?;
        let found: i32 =
            tx.query_one("SELECT coalesce(max(version), 0) FROM fleet_schema", &[]).await.map_err(stmt)?.get(0);
        let known = known_version();
        if found > known {
            return Err(Retry::Fail(FleetError::SchemaTooNew { found, known }));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| Retry::Fail(FleetError::Db(format!("migration {version:03} failed: {}", db_error(&e)))))?;
            tx.execute("INSERT INTO fleet_schema (version, applied_by) VALUES ($1, $2)", &[version, &by])
                .await
                .map_err(stmt)?;
        }
        tx.commit().await.map_err(stmt)?;
        if found < known {
            tracing::info!(from = found, to = known, by, "fleet schema migrated");
        }
        Ok((found, found.max(known)))
    }

    /// The schema version in the database (0: never migrated), without changing anything.
    pub async fn schema_version(&self) -> Result<i32, FleetError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one("SELECT to_regclass('fleet_schema') IS NOT NULL", &[])
            .await
            .map_err(|e| statement_error(&e))?
            .get(0);
        if !exists {
            return Ok(0);
        }
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM fleet_schema", &[])
            .await
            .map_err(|e| statement_error(&e))?;
        Ok(row.get(0))
    }

    /// `None` when the database's schema is what this binary needs; otherwise the operator's problem
    /// (for `migrate = "manual"`, which never migrates by itself).
    pub async fn schema_problem(&self) -> Result<Option<String>, FleetError> {
        let found = self.schema_version().await?;
        let known = known_version();
        Ok(match found.cmp(&known) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => Some(format!(
                "database schema version {found} is older than this binary's {known}: run `firebreak fleet migrate`"
            )),
            std::cmp::Ordering::Greater => Some(FleetError::SchemaTooNew { found, known }.to_string()),
        })
    }
}

/// The advisory lock key that serialises migrations (`pg_advisory_xact_lock`; "firebreak").
pub const MIGRATE_LOCK: i64 = 7_244_917_071;

/// The table that records applied migrations.
const FLEET_SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS fleet_schema (
  version    integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now(),
  applied_by text NOT NULL
)";

/// The schema version this binary knows (its last migration).
pub fn known_version() -> i32 {
    MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0)
}

/// A migration attempt's failure: a lock wait past `lock_timeout` is worth another try.
enum Retry {
    LockTimeout(FleetError),
    Fail(FleetError),
}

impl From<FleetError> for Retry {
    fn from(e: FleetError) -> Retry {
        Retry::Fail(e)
    }
}

fn stmt(e: tokio_postgres::Error) -> Retry {
    use tokio_postgres::error::SqlState;
    let lock = e.code().is_some_and(|c| *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::QUERY_CANCELED);
    let e = statement_error(&e);
    if lock {
        Retry::LockTimeout(e)
    } else {
        Retry::Fail(e)
    }
}

/// A statement's error: `Unavailable` when the connection is gone, `Db` when the server refused it.
pub fn statement_error(e: &tokio_postgres::Error) -> FleetError {
    if e.as_db_error().is_none() || e.is_closed() {
        FleetError::Unavailable(db_error(e))
    } else {
        FleetError::Db(db_error(e))
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
        // The cause (an io error: "Connection refused"), never the URL.
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}
