//! The incident book in PostgreSQL: one open incident per (trigger, principal, server) fleet-wide
//! (a partial unique index), joined by every replica; plans run once per firing.
//!
//! - [`open_or_join`]: `INSERT … ON CONFLICT … DO NOTHING RETURNING id` — the replica whose insert
//!   returned the id opened the incident and is the only one to run its plan ([`set_actions`]
//!   records what it did); the others join it (`firings + 1`, evidence while fewer than
//!   [`MAX_EVIDENCE`] rows).
//! - [`update`]: escalation, checklist ticks, notes and resolution under `SELECT … FOR UPDATE`.
//! - [`list`], [`get`]: today's [`Incident`] JSON, with ids `INC-00042`, the same from every replica.
//! - [`merge`]: an incident a replica recorded in its local file while PostgreSQL was unreachable,
//!   inserted or joined into the open one (`doc.merged_from`).
//!
//! `doc` is the incident minus the columns (`id`, `status`, `firings`, `first_seen`, `last_seen`)
//! and minus its evidence (rows of `incident_evidence`).

use std::future::Future;

use serde_json::{Map, Value};

use super::{Fleet, FleetError};
use crate::incident::{Evidence, Incident, MAX_EVIDENCE};

/// `first_seen` as RFC 3339 seconds in UTC (the incident file's format).
macro_rules! ts {
    ($col:literal) => {
        concat!("to_char(", $col, " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
    };
}

/// The columns an [`Incident`] is assembled from, in [`assemble`]'s order.
const COLUMNS: &str = concat!("id, status, firings, ", ts!("first_seen"), ", ", ts!("last_seen"), ", doc");

/// [`super::db::statement_error`] by value, for `map_err`.
pub(crate) fn pg(e: tokio_postgres::Error) -> FleetError {
    super::db::statement_error(&e)
}

/// `INC-00042` for row 42.
pub fn display_id(id: i64) -> String {
    format!("INC-{id:05}")
}

/// The row of a fleet incident id (`INC-00042` → 42); `None` for a local id (`INC-A-L0001`).
pub fn row_id(id: &str) -> Option<i64> {
    let n = id.strip_prefix("INC-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The `server` column: only `tool_definition_changed` incidents are per server (as in the file book).
fn server_key(inc: &Incident) -> String {
    if inc.trigger == "tool_definition_changed" {
        inc.server.clone().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The `doc` of an incident: everything but the columns and the evidence.
fn doc_of(inc: &Incident) -> Value {
    let mut v = serde_json::to_value(inc).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for k in ["id", "status", "firings", "first_seen", "last_seen", "evidence"] {
            m.remove(k);
        }
    }
    v
}

/// An incident from its row (`COLUMNS`) and evidence.
fn assemble(row: &tokio_postgres::Row, evidence: Vec<Evidence>) -> Result<Incident, FleetError> {
    let id: i64 = row.try_get(0).map_err(pg)?;
    let status: String = row.try_get(1).map_err(pg)?;
    let firings: i64 = row.try_get(2).map_err(pg)?;
    let first: String = row.try_get(3).map_err(pg)?;
    let last: String = row.try_get(4).map_err(pg)?;
    let doc: Value = row.try_get(5).map_err(pg)?;
    let mut m = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("id".into(), display_id(id).into());
    m.insert("status".into(), status.into());
    m.insert("firings".into(), firings.max(0).into());
    m.insert("first_seen".into(), first.into());
    m.insert("last_seen".into(), last.into());
    m.insert("evidence".into(), serde_json::to_value(evidence).unwrap_or(Value::Array(Vec::new())));
    serde_json::from_value(Value::Object(m)).map_err(|e| FleetError::Db(format!("incident {}: {e}", display_id(id))))
}

/// What [`open_or_join`] did.
#[derive(Debug)]
pub struct Fired {
    /// The incident (opened: as given, with its fleet id; joined: as in the database, without evidence).
    pub incident: Incident,
    /// Its row.
    pub row: i64,
    /// This replica opened it (and so runs its plan).
    pub opened: bool,
}

fn seq(ev: &Evidence) -> Option<i64> {
    ev.audit_seq.and_then(|s| i64::try_from(s).ok())
}

/// Opens `new` (its id is ignored) or joins the open incident of its trigger, principal and server,
/// once fleet-wide. `ev` is the firing's evidence, recorded as this replica's.
pub async fn open_or_join(fleet: &Fleet, new: &Incident, ev: &Evidence) -> Result<Fired, FleetError> {
    let c = fleet.db.client().await?;
    let user = new.principal.user.clone().unwrap_or_default();
    let server = server_key(new);
    let doc = doc_of(new);
    let rid = fleet.replica_id.as_str();
    let insert = concat!(
        "WITH n AS (INSERT INTO incidents (trigger, principal_user, server, status, severity, opened_by, evidence_count, doc) ",
        "VALUES ($1, $2, $3, 'open', $4, $5, 1, $6) ",
        "ON CONFLICT (trigger, principal_user, server) WHERE status = 'open' DO NOTHING ",
        "RETURNING id, first_seen, last_seen), ",
        "e AS (INSERT INTO incident_evidence (incident_id, replica_id, audit_seq, request_id, rule, time) ",
        "SELECT id, $5, $7, $8, $9, coalesce($10::text::timestamptz, now()) FROM n) ",
        "SELECT id, ",
        ts!("first_seen"),
        ", ",
        ts!("last_seen"),
        " FROM n"
    );
    let join = concat!(
        "WITH o AS (SELECT id, evidence_count AS before FROM incidents ",
        "WHERE trigger = $1 AND principal_user = $2 AND server = $3 AND status = 'open' FOR UPDATE), ",
        "u AS (UPDATE incidents i SET firings = i.firings + 1, last_seen = now(), ",
        "evidence_count = i.evidence_count + (o.before < $9)::int FROM o WHERE i.id = o.id ",
        "RETURNING i.id, o.before, i.status, i.firings, i.first_seen, i.last_seen, i.doc), ",
        "e AS (INSERT INTO incident_evidence (incident_id, replica_id, audit_seq, request_id, rule, time) ",
        "SELECT id, $4, $5, $6, $7, coalesce($8::text::timestamptz, now()) FROM u WHERE before < $9) ",
        "SELECT id, status, firings, ",
        ts!("first_seen"),
        ", ",
        ts!("last_seen"),
        ", doc FROM u"
    );
    let time = Some(ev.time.as_str()).filter(|t| !t.is_empty());
    let cap = i32::try_from(MAX_EVIDENCE).unwrap_or(i32::MAX);
    // Join first (the common case, and no sequence value is spent on a conflict); open when there is
    // none; when another replica opened it in between, join that one. An incident resolved between
    // the two frees the slot, hence a third try.
    for _ in 0..3 {
        let joined = c
            .query_opt(join, &[&new.trigger, &user, &server, &rid, &seq(ev), &ev.request_id, &ev.rule, &time, &cap])
            .await
            .map_err(pg)?;
        if let Some(r) = joined {
            let row: i64 = r.try_get(0).map_err(pg)?;
            return Ok(Fired { incident: assemble(&r, Vec::new())?, row, opened: false });
        }
        let opened = c
            .query_opt(
                insert,
                &[
                    &new.trigger,
                    &user,
                    &server,
                    &new.severity.as_str(),
                    &rid,
                    &doc,
                    &seq(ev),
                    &ev.request_id,
                    &ev.rule,
                    &time,
                ],
            )
            .await
            .map_err(pg)?;
        if let Some(r) = opened {
            let row: i64 = r.try_get(0).map_err(pg)?;
            let mut incident = new.clone();
            incident.id = display_id(row);
            incident.first_seen = r.try_get(1).map_err(pg)?;
            incident.last_seen = r.try_get(2).map_err(pg)?;
            incident.firings = 1;
            let mut ev = ev.clone();
            ev.replica = Some(rid.to_owned());
            incident.evidence = vec![ev];
            return Ok(Fired { incident, row, opened: true });
        }
    }
    Err(FleetError::Db(format!("incident of `{}` neither opened nor joined (resolved twice meanwhile)", new.trigger)))
}

/// Records the containment the opening replica ran (`doc.actions`).
pub async fn set_actions(fleet: &Fleet, row: i64, actions: &[crate::incident::Taken]) -> Result<(), FleetError> {
    let c = fleet.db.client().await?;
    let v = serde_json::to_value(actions).map_err(|e| FleetError::Db(e.to_string()))?;
    c.execute("UPDATE incidents SET doc = jsonb_set(doc, '{actions}', $2) WHERE id = $1", &[&row, &v])
        .await
        .map_err(pg)?;
    Ok(())
}

/// Runs `f` on incident `row` under its row lock (`SELECT … FOR UPDATE`): `f` returns the incident
/// to write back (status and doc; `None`: unchanged) and a value for the caller. `Ok(None)`: no
/// such incident. `f` may take a while (a plan's switch batch); the lock is held until it is done,
/// so a second replica escalating the same incident sees what the first did.
pub async fn update<T, F, Fut>(fleet: &Fleet, row: i64, f: F) -> Result<Option<T>, FleetError>
where
    F: FnOnce(Incident) -> Fut,
    Fut: Future<Output = (Option<Incident>, T)>,
{
    let mut c = fleet.db.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let q = format!("SELECT {COLUMNS} FROM incidents WHERE id = $1 FOR UPDATE");
    let Some(r) = tx.query_opt(&q, &[&row]).await.map_err(pg)? else {
        return Ok(None);
    };
    let t: &tokio_postgres::Transaction<'_> = &tx;
    let evidence = evidence_of(t, &[row]).await?.remove(&row).unwrap_or_default();
    let inc = assemble(&r, evidence)?;
    let (changed, out) = f(inc).await;
    if let Some(inc) = changed {
        let status = match inc.status {
            crate::incident::Status::Open => "open",
            crate::incident::Status::Resolved => "resolved",
        };
        tx.execute("UPDATE incidents SET status = $2, doc = $3 WHERE id = $1", &[&row, &status, &doc_of(&inc)])
            .await
            .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(Some(out))
}

/// The first [`MAX_EVIDENCE`] evidence rows of each incident of `rows`.
async fn evidence_of<C: tokio_postgres::GenericClient>(
    c: &C,
    rows: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<Evidence>>, FleetError> {
    let q = concat!(
        "SELECT incident_id, replica_id, audit_seq, request_id, rule, ",
        ts!("time"),
        " FROM (SELECT *, row_number() OVER (PARTITION BY incident_id ORDER BY time, ctid) AS n ",
        "FROM incident_evidence WHERE incident_id = ANY($1)) x WHERE n <= $2 ORDER BY incident_id, time, n"
    );
    let cap = i64::try_from(MAX_EVIDENCE).unwrap_or(i64::MAX);
    let mut out: std::collections::HashMap<i64, Vec<Evidence>> = std::collections::HashMap::new();
    for r in c.query(q, &[&rows, &cap]).await.map_err(pg)? {
        let id: i64 = r.try_get(0).map_err(pg)?;
        let seq: Option<i64> = r.try_get(2).map_err(pg)?;
        out.entry(id).or_default().push(Evidence {
            replica: r.try_get(1).map_err(pg)?,
            audit_seq: seq.and_then(|s| u64::try_from(s).ok()),
            request_id: r.try_get(3).map_err(pg)?,
            rule: r.try_get(4).map_err(pg)?,
            time: r.try_get(5).map_err(pg)?,
        });
    }
    Ok(out)
}

/// Most incidents [`list`] returns (newest first).
const LIST_LIMIT: i64 = 2_000;

/// Every incident, newest first (only open ones when `open_only`), as the file book lists them.
pub async fn list(fleet: &Fleet, open_only: bool) -> Result<Vec<Incident>, FleetError> {
    let c = fleet.db.client().await?;
    let filter = if open_only { "WHERE status = 'open'" } else { "" };
    let q = format!("SELECT {COLUMNS} FROM incidents {filter} ORDER BY id DESC LIMIT $1");
    let rows = c.query(&q, &[&LIST_LIMIT]).await.map_err(pg)?;
    let ids: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
    let client: &tokio_postgres::Client = &c;
    let mut evidence = evidence_of(client, &ids).await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0).map_err(pg)?;
            assemble(r, evidence.remove(&id).unwrap_or_default())
        })
        .collect()
}

/// One incident by its fleet id (`INC-00042`); `Ok(None)` when there is none.
pub async fn get(fleet: &Fleet, id: &str) -> Result<Option<Incident>, FleetError> {
    let Some(row) = row_id(id) else { return Ok(None) };
    let c = fleet.db.client().await?;
    let q = format!("SELECT {COLUMNS} FROM incidents WHERE id = $1");
    let Some(r) = c.query_opt(&q, &[&row]).await.map_err(pg)? else { return Ok(None) };
    let client: &tokio_postgres::Client = &c;
    let evidence = evidence_of(client, &[row]).await?.remove(&row).unwrap_or_default();
    assemble(&r, evidence).map(Some)
}

/// Merges an incident this replica recorded locally while PostgreSQL was unreachable: inserted
/// (open, or resolved as it was), or joined into the open incident of the same trigger and
/// principal (its firings and evidence added). Returns the fleet id it went to.
pub async fn merge(fleet: &Fleet, local: &Incident) -> Result<String, FleetError> {
    let mut c = fleet.db.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let user = local.principal.user.clone().unwrap_or_default();
    let server = server_key(local);
    let firings = i64::try_from(local.firings.max(1)).unwrap_or(i64::MAX);
    let mut doc = local.clone();
    doc.local = false;
    doc.merged_from = Some(local.id.clone());
    let open = local.status == crate::incident::Status::Open;
    let joined = if open {
        tx.query_opt(
            "UPDATE incidents SET firings = firings + $4, last_seen = greatest(last_seen, $5::text::timestamptz), \
             doc = jsonb_set(doc, '{merged_from}', to_jsonb(coalesce(doc->>'merged_from' || ', ', '') || $6::text)) \
             WHERE trigger = $1 AND principal_user = $2 AND server = $3 AND status = 'open' RETURNING id, evidence_count",
            &[&local.trigger, &user, &server, &firings, &local.last_seen, &local.id],
        )
        .await
        .map_err(pg)?
    } else {
        None
    };
    let (row, have): (i64, i32) = match joined {
        Some(r) => (r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?),
        None => {
            let status = if open { "open" } else { "resolved" };
            let r = tx
                .query_one(
                    "INSERT INTO incidents (trigger, principal_user, server, status, severity, opened_by, first_seen, \
                     last_seen, firings, evidence_count, doc) VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, \
                     $8::text::timestamptz, $9, 0, $10) RETURNING id",
                    &[
                        &local.trigger,
                        &user,
                        &server,
                        &status,
                        &local.severity.as_str(),
                        &fleet.replica_id,
                        &local.first_seen,
                        &local.last_seen,
                        &firings,
                        &doc_of(&doc),
                    ],
                )
                .await
                .map_err(pg)?;
            (r.try_get(0).map_err(pg)?, 0)
        }
    };
    let room = MAX_EVIDENCE.saturating_sub(usize::try_from(have).unwrap_or(MAX_EVIDENCE));
    let mut added = 0i32;
    for ev in local.evidence.iter().take(room) {
        let replica = ev.replica.clone().unwrap_or_else(|| fleet.replica_id.clone());
        tx.execute(
            "INSERT INTO incident_evidence (incident_id, replica_id, audit_seq, request_id, rule, time) \
             VALUES ($1, $2, $3, $4, $5, coalesce($6::text::timestamptz, now()))",
            &[&row, &replica, &seq(ev), &ev.request_id, &ev.rule, &Some(ev.time.as_str()).filter(|t| !t.is_empty())],
        )
        .await
        .map_err(pg)?;
        added += 1;
    }
    tx.execute("UPDATE incidents SET evidence_count = evidence_count + $2 WHERE id = $1", &[&row, &added])
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(display_id(row))
}

/// A throwaway PostgreSQL database with the fleet schema, for the SQL helpers' unit tests
/// (`FIREBREAK_TEST_PG`, default the loopback server; `bash tests/fleet-services.sh` starts it).
#[cfg(test)]
pub(crate) mod testdb {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::config::fleet::{FleetSettings, Migrate, UrlSource};
    use crate::config::Secret;
    use crate::fleet::Fleet;

    /// A database `fbt_h4_<pid>_<n>`, dropped with the value.
    pub(crate) struct TestDb {
        pub(crate) name: String,
        admin_url: String,
    }

    fn admin_url() -> String {
        std::env::var("FIREBREAK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    fn url_of(db: &str) -> String {
        let base = admin_url();
        match base.rsplit_once('/') {
            Some((head, _)) => format!("{head}/{db}"),
            None => base,
        }
    }

    async fn admin_client(url: &str) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
            panic!("fleet tests need PostgreSQL on loopback: run `bash tests/fleet-services.sh` ({e})")
        });
        tokio::spawn(conn);
        c
    }

    impl TestDb {
        /// Creates the database and applies every migration.
        pub(crate) async fn new() -> TestDb {
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!("fbt_h4_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            let admin = admin_url();
            let c = admin_client(&admin).await;
            c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop test database");
            c.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            let db = admin_client(&url_of(&name)).await;
            for (_, sql) in crate::fleet::db::MIGRATIONS {
                db.batch_execute(sql).await.expect("migration");
            }
            TestDb { name, admin_url: admin }
        }

        /// A fleet handle on this database as replica `id`.
        pub(crate) fn fleet(&self, id: &str) -> Arc<Fleet> {
            let settings = FleetSettings {
                postgres: UrlSource::Inline(Secret::new(url_of(&self.name))),
                redis: UrlSource::Inline(Secret::new("redis://127.0.0.1:6379/")),
                redis_prefix: format!("H4test{}", std::process::id()),
                replica_id: Some(id.into()),
                connect_timeout: Duration::from_secs(3),
                statement_timeout: Duration::from_secs(5),
                redis_timeout: Duration::from_millis(200),
                poll_interval: Duration::from_millis(500),
                heartbeat_interval: Duration::from_millis(250),
                live_after: Duration::from_secs(2),
                wait_timeout: Duration::from_millis(500),
                pool_size: 8,
                migrate: Migrate::Auto,
                audit_queue_bytes: 1 << 20,
                audit_batch: 100,
                allow_plaintext: false,
            };
            Fleet::new(Arc::new(settings), id.into()).expect("fleet handle")
        }

        /// Runs `sql` directly.
        pub(crate) async fn sql(&self, sql: &str) -> Vec<tokio_postgres::Row> {
            admin_client(&url_of(&self.name)).await.query(sql, &[]).await.expect("query")
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let (name, url) = (self.name.clone(), self.admin_url.clone());
            // Dropped from a thread of its own: Drop may run inside a runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(rt) = rt {
                    rt.block_on(async move {
                        if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                            tokio::spawn(conn);
                            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_local_ids_are_not_rows() {
        assert_eq!(display_id(42), "INC-00042");
        assert_eq!(display_id(123_456), "INC-123456");
        assert_eq!(row_id("INC-00042"), Some(42));
        assert_eq!(row_id("INC-A-L0001"), None);
        assert_eq!(row_id("INC-"), None);
        assert_eq!(row_id("42"), None);
    }

    use super::testdb::TestDb;
    use crate::incident::{IncidentSeverity, Status, Taken, Target};

    fn incident(trigger: &str, user: &str) -> Incident {
        Incident {
            id: String::new(),
            severity: IncidentSeverity::Sev2,
            trigger: trigger.into(),
            status: Status::Open,
            principal: Target { user: Some(user.into()), ..Target::default() },
            server: None,
            first_seen: crate::incident::now_rfc3339(),
            last_seen: crate::incident::now_rfc3339(),
            firings: 1,
            evidence: Vec::new(),
            actions: Vec::new(),
            checklist: vec!["look".into(), "fix".into()],
            ticked: Vec::new(),
            notes: Vec::new(),
            resolved_at: None,
            local: false,
            merged_from: None,
        }
    }

    fn ev(seq: u64) -> Evidence {
        Evidence {
            replica: None,
            audit_seq: Some(seq),
            request_id: Some(format!("req_{seq}")),
            rule: "injection.blocked".into(),
            time: crate::incident::now_rfc3339(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_firings_on_two_replicas_open_one_incident() {
        let db = TestDb::new().await;
        let (a, b) = (db.fleet("A"), db.fleet("B"));
        let inc = incident("sustained_injection_campaign", "alice");
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let f = if i % 2 == 0 { a.clone() } else { b.clone() };
            let inc = inc.clone();
            tasks.push(tokio::spawn(async move { open_or_join(&f, &inc, &ev(i)).await.expect("fired").opened }));
        }
        let mut opened = 0;
        for t in tasks {
            opened += usize::from(t.await.expect("task"));
        }
        assert_eq!(opened, 1, "exactly one replica opened it (and would run the plan)");
        let list_a = list(&a, false).await.expect("list on A");
        let list_b = list(&b, false).await.expect("list on B");
        assert_eq!(list_a.len(), 1);
        assert_eq!(list_a[0].id, "INC-00001");
        assert_eq!(list_a[0].firings, 8);
        assert_eq!(list_a[0].evidence.len(), 8);
        assert_eq!(list_a[0].checklist, vec!["look", "fix"]);
        assert!(list_a[0].evidence.iter().all(|e| e.replica.is_some()), "evidence names its replica");
        assert_eq!(
            serde_json::to_value(&list_a).expect("json"),
            serde_json::to_value(&list_b).expect("json"),
            "the same list from every replica"
        );
        // Another principal is another incident.
        let other = open_or_join(&b, &incident("sustained_injection_campaign", "bob"), &ev(99)).await.expect("bob");
        assert!(other.opened);
        assert_ne!(other.incident.id, "INC-00001");
        assert_eq!(row_id(&other.incident.id), Some(other.row), "ids are rows (concurrent opens may leave gaps)");
    }

    #[tokio::test]
    async fn evidence_is_capped_firings_are_not() {
        let db = TestDb::new().await;
        let a = db.fleet("A");
        let inc = incident("anomalous_probing", "alice");
        for i in 0..(MAX_EVIDENCE as u64 + 5) {
            open_or_join(&a, &inc, &ev(i)).await.expect("fired");
        }
        let got = get(&a, "INC-00001").await.expect("get").expect("exists");
        assert_eq!(got.firings, MAX_EVIDENCE as u64 + 5);
        assert_eq!(got.evidence.len(), MAX_EVIDENCE);
        let rows = db.sql("SELECT evidence_count, (SELECT count(*) FROM incident_evidence) FROM incidents").await;
        assert_eq!(rows[0].get::<_, i32>(0), MAX_EVIDENCE as i32);
        assert_eq!(rows[0].get::<_, i64>(1), MAX_EVIDENCE as i64);
        assert!(get(&a, "INC-00002").await.expect("get").is_none());
        assert!(get(&a, "INC-A-L0001").await.expect("get").is_none(), "a local id is not a row");
    }

    #[tokio::test]
    async fn actions_ticks_and_resolution_persist_and_free_the_slot() {
        let db = TestDb::new().await;
        let (a, b) = (db.fleet("A"), db.fleet("B"));
        let fired = open_or_join(&a, &incident("bulk_data_extraction", "carol"), &ev(1)).await.expect("open");
        let taken = Taken {
            plan: "sev2".into(),
            actor: "firebreak".into(),
            time: crate::incident::now_rfc3339(),
            actions: Vec::new(),
            version: Some(3),
            credentials_marked_for_rotation: false,
            error: None,
            awaiting_operator: Vec::new(),
            corroborated_by: None,
        };
        set_actions(&a, fired.row, &[taken]).await.expect("actions");
        let joined = open_or_join(&b, &incident("bulk_data_extraction", "carol"), &ev(2)).await.expect("join");
        assert!(!joined.opened);
        assert_eq!(joined.incident.actions.len(), 1, "the joiner sees the opener's containment");
        assert_eq!(joined.incident.actions[0].version, Some(3));
        let ticked = update(&b, fired.row, |mut inc: Incident| async move {
            let r = crate::incident::tick_step(&mut inc, 1, true, "ops");
            (Some(inc), r)
        })
        .await
        .expect("update")
        .expect("found");
        assert_eq!(ticked.expect("step 1 exists"), "fix");
        let no_step = update(&b, fired.row, |mut inc: Incident| async move {
            let r = crate::incident::tick_step(&mut inc, 9, true, "ops");
            (None, r)
        })
        .await
        .expect("update")
        .expect("found");
        assert!(no_step.is_err());
        update(&a, fired.row, |mut inc: Incident| async move {
            crate::incident::resolve_with(&mut inc, "ops", "done");
            (Some(inc), ())
        })
        .await
        .expect("resolve")
        .expect("found");
        let got = get(&b, &fired.incident.id).await.expect("get").expect("exists");
        assert_eq!(got.status, Status::Resolved);
        assert_eq!(got.ticked.len(), 1);
        assert_eq!(got.notes.len(), 1);
        assert!(got.resolved_at.is_some());
        assert_eq!(got.firings, 2);
        let again = open_or_join(&b, &incident("bulk_data_extraction", "carol"), &ev(3)).await.expect("reopen");
        assert!(again.opened, "resolving freed the open slot");
        assert_eq!(list(&a, true).await.expect("open list").len(), 1);
        assert_eq!(list(&a, false).await.expect("all").len(), 2);
        assert!(update(&a, 999, |i: Incident| async move { (Some(i), ()) }).await.expect("update").is_none());
    }

    #[tokio::test]
    async fn local_incidents_merge_by_join_or_insert() {
        let db = TestDb::new().await;
        let (a, b) = (db.fleet("A"), db.fleet("B"));
        open_or_join(&a, &incident("sustained_injection_campaign", "dave"), &ev(1)).await.expect("open");
        let mut local = incident("sustained_injection_campaign", "dave");
        local.id = "INC-B-L0001".into();
        local.local = true;
        local.firings = 3;
        local.evidence = vec![ev(10), ev(11)];
        assert_eq!(merge(&b, &local).await.expect("merge"), "INC-00001", "joined the open one");
        let got = get(&a, "INC-00001").await.expect("get").expect("exists");
        assert_eq!(got.firings, 4);
        assert_eq!(got.evidence.len(), 3);
        assert_eq!(got.merged_from.as_deref(), Some("INC-B-L0001"));
        let mut gone = incident("credential_leakage_confirmed", "erin");
        gone.id = "INC-B-L0002".into();
        gone.local = true;
        gone.status = Status::Resolved;
        gone.evidence = vec![ev(12)];
        let to = merge(&b, &gone).await.expect("merge");
        let got = get(&a, &to).await.expect("get").expect("exists");
        assert_eq!(got.status, Status::Resolved);
        assert!(!got.local);
        assert_eq!(got.merged_from.as_deref(), Some("INC-B-L0002"));
        assert_eq!(got.evidence.len(), 1);
    }
}
