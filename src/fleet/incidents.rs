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

/// A statement error: `Unavailable` when the connection is gone, `Db` when the server refused it.
pub(crate) fn pg(e: tokio_postgres::Error) -> FleetError {
    if e.as_db_error().is_some() {
        FleetError::Db(super::db::db_error(&e))
    } else {
        FleetError::Unavailable(super::db::db_error(&e))
    }
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
    // An incident resolved between the insert and the join frees the slot: try the insert again once.
    for _ in 0..2 {
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
        let joined = c
            .query_opt(join, &[&new.trigger, &user, &server, &rid, &seq(ev), &ev.request_id, &ev.rule, &time, &cap])
            .await
            .map_err(pg)?;
        if let Some(r) = joined {
            let row: i64 = r.try_get(0).map_err(pg)?;
            return Ok(Fired { incident: assemble(&r, Vec::new())?, row, opened: false });
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
}
