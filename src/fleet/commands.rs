//! Fleet commands (credential rotation, reload) issued on one replica and run by every replica.
//!
//! [`issue`] inserts the command and notifies `firebreak_cmd` in one transaction; every replica's
//! runner (`gateway::fleet::commands`), woken by the notification or by its poll of
//! [`since`]`(last)`, runs it and writes its result ([`record_result`]); the issuing call waits
//! ([`wait`]) for a result from every live replica, like `?wait=all`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::incidents::pg;
use super::{Fleet, FleetError};

/// The notification channel of new commands (payload: the command id).
pub const CHANNEL: &str = "firebreak_cmd";

/// What a command does on each replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Re-read credentials from their sources (`target`: one name; `None`: all).
    RotateCredentials,
    /// Reload the policy file.
    Reload,
}

impl Kind {
    /// The `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RotateCredentials => "rotate_credentials",
            Kind::Reload => "reload",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "rotate_credentials" => Some(Kind::RotateCredentials),
            "reload" => Some(Kind::Reload),
            _ => None,
        }
    }
}

/// A command as stored.
#[derive(Debug, Clone)]
pub struct Command {
    /// Its id (increasing).
    pub id: i64,
    /// What to do (`None`: a kind this binary does not know; answered as failed).
    pub kind: Option<Kind>,
    /// The `kind` column as written.
    pub kind_name: String,
    /// One credential name (rotation), or all.
    pub target: Option<String>,
    /// Who issued it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// The replica where it was issued (it ran it already).
    pub issued_by: String,
}

/// Inserts a command and notifies every replica, in one transaction; its id.
pub async fn issue(
    fleet: &Fleet,
    kind: Kind,
    target: Option<&str>,
    actor: &str,
    reason: &str,
) -> Result<i64, FleetError> {
    let mut c = fleet.db.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let row = tx
        .query_one(
            "INSERT INTO fleet_commands (kind, target, actor, reason, issued_by) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&kind.as_str(), &target, &actor, &reason, &fleet.replica_id],
        )
        .await
        .map_err(pg)?;
    let id: i64 = row.try_get(0).map_err(pg)?;
    tx.execute("SELECT pg_notify('firebreak_cmd', $1::bigint::text)", &[&id]).await.map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(id)
}

/// The newest command id (0: none): a starting replica runs only what is issued after it started
/// (it read its credentials and policy fresh anyway).
pub async fn max_id(fleet: &Fleet) -> Result<i64, FleetError> {
    let c = fleet.db.client().await?;
    let row = c.query_one("SELECT coalesce(max(id), 0)::bigint FROM fleet_commands", &[]).await.map_err(pg)?;
    row.try_get(0).map_err(pg)
}

/// The commands after `last`, oldest first.
pub async fn since(fleet: &Fleet, last: i64) -> Result<Vec<Command>, FleetError> {
    let c = fleet.db.client().await?;
    let rows = c
        .query(
            "SELECT id, kind, target, actor, reason, issued_by FROM fleet_commands WHERE id > $1 ORDER BY id LIMIT 100",
            &[&last],
        )
        .await
        .map_err(pg)?;
    rows.iter()
        .map(|r| {
            let kind_name: String = r.try_get(1).map_err(pg)?;
            Ok(Command {
                id: r.try_get(0).map_err(pg)?,
                kind: Kind::parse(&kind_name),
                kind_name,
                target: r.try_get(2).map_err(pg)?,
                actor: r.try_get(3).map_err(pg)?,
                reason: r.try_get(4).map_err(pg)?,
                issued_by: r.try_get(5).map_err(pg)?,
            })
        })
        .collect()
}

/// Records this replica's result of command `id` (a second result is ignored).
pub async fn record_result(fleet: &Fleet, id: i64, ok: bool, detail: &Value) -> Result<(), FleetError> {
    let c = fleet.db.client().await?;
    c.execute(
        "INSERT INTO fleet_command_results (command_id, replica_id, ok, detail) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (command_id, replica_id) DO NOTHING",
        &[&id, &fleet.replica_id, &ok, detail],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Whether this replica has a result for command `id` already (the tests' check).
#[cfg(test)]
async fn has_result(fleet: &Fleet, id: i64) -> Result<bool, FleetError> {
    let c = fleet.db.client().await?;
    let row = c
        .query_opt(
            "SELECT 1 FROM fleet_command_results WHERE command_id = $1 AND replica_id = $2",
            &[&id, &fleet.replica_id],
        )
        .await
        .map_err(pg)?;
    Ok(row.is_some())
}

/// Where command `id` stands: each replica's result, and the live replicas without one.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Replica id → `{"ok": bool, …detail}`.
    pub results: BTreeMap<String, Value>,
    /// Live replicas (heartbeat within `live_after`) that have not answered.
    pub laggards: Vec<String>,
    /// How long the wait took.
    pub waited_ms: u64,
}

impl Outcome {
    /// The `fleet` member of an admin answer.
    pub fn to_json(&self, id: i64) -> Value {
        serde_json::json!({
            "command": id,
            "complete": self.laggards.is_empty(),
            "waited_ms": self.waited_ms,
            "results": self.results,
            "laggards": self.laggards,
        })
    }
}

/// The results of command `id` and the live replicas still without one.
pub async fn outcome(fleet: &Fleet, id: i64) -> Result<Outcome, FleetError> {
    let c = fleet.db.client().await?;
    let mut results = BTreeMap::new();
    for r in c
        .query("SELECT replica_id, ok, detail FROM fleet_command_results WHERE command_id = $1", &[&id])
        .await
        .map_err(pg)?
    {
        let replica: String = r.try_get(0).map_err(pg)?;
        let ok: bool = r.try_get(1).map_err(pg)?;
        let detail: Option<Value> = r.try_get(2).map_err(pg)?;
        let mut v = match detail {
            Some(Value::Object(m)) => m,
            Some(other) => {
                let mut m = serde_json::Map::new();
                m.insert("detail".into(), other);
                m
            }
            None => serde_json::Map::new(),
        };
        v.insert("ok".into(), ok.into());
        results.insert(replica, Value::Object(v));
    }
    let live_after = fleet.settings.live_after.as_secs_f64();
    let laggards = c
        .query(
            "SELECT replica_id FROM replicas WHERE last_seen > now() - make_interval(secs => $1) ORDER BY replica_id",
            &[&live_after],
        )
        .await
        .map_err(pg)?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter(|id| !results.contains_key(id))
        .collect();
    Ok(Outcome { results, laggards, waited_ms: 0 })
}

/// Waits (polling every 20 ms) until every live replica has answered command `id`, or `timeout`.
pub async fn wait(fleet: &Fleet, id: i64, timeout: Duration) -> Result<Outcome, FleetError> {
    let start = Instant::now();
    loop {
        let mut o = outcome(fleet, id).await?;
        o.waited_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        if o.laggards.is_empty() || start.elapsed() >= timeout {
            return Ok(o);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_the_check_constraint() {
        for k in [Kind::RotateCredentials, Kind::Reload] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("drop_tables"), None);
        let o = Outcome { laggards: vec!["C".into()], ..Outcome::default() };
        assert_eq!(o.to_json(7)["complete"], false);
        assert_eq!(o.to_json(7)["command"], 7);
    }

    #[tokio::test]
    async fn commands_are_issued_run_and_waited_for() {
        let db = super::super::incidents::testdb::TestDb::new().await;
        let (a, b) = (db.fleet("A"), db.fleet("B"));
        assert_eq!(max_id(&b).await.expect("max"), 0);
        db.sql("INSERT INTO replicas (replica_id, address, pid, binary_version, started_at, last_seen, policy_hash) VALUES ('A', 'x', 1, 'v', now(), now(), 'h'), ('B', 'y', 2, 'v', now(), now(), 'h'), ('Z', 'z', 3, 'v', now(), now() - interval '1 hour', 'h')").await;
        let id = issue(&a, Kind::RotateCredentials, None, "ops", "leak").await.expect("issue");
        record_result(&a, id, true, &serde_json::json!({"rotated": ["openai"], "failed": {}})).await.expect("own");
        let cmds = since(&b, 0).await.expect("since");
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].kind, Some(Kind::RotateCredentials));
        assert_eq!(cmds[0].issued_by, "A");
        assert!(since(&b, id).await.expect("since").is_empty());
        let o = wait(&a, id, Duration::from_millis(100)).await.expect("wait");
        assert_eq!(o.laggards, vec!["B"], "B is live and has not answered; Z is not live");
        record_result(&b, id, false, &serde_json::json!({"error": "no source"})).await.expect("B");
        assert!(has_result(&b, id).await.expect("has"));
        let o = wait(&a, id, Duration::from_secs(2)).await.expect("wait");
        assert!(o.laggards.is_empty());
        let v = o.to_json(id);
        assert_eq!(v["results"]["A"]["ok"], true);
        assert_eq!(v["results"]["A"]["rotated"][0], "openai");
        assert_eq!(v["results"]["B"]["ok"], false);
        assert_eq!(v["complete"], true);
        let r = issue(&b, Kind::Reload, None, "ops", "new policy").await.expect("reload");
        assert!(r > id);
        assert_eq!(max_id(&a).await.expect("max"), r);
    }
}
