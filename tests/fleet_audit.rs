//! Fleet mode's audit shipping (issue 14, design §9): a real gateway's trail goes to `audit_records`
//! once per record however often it is shipped; `audit verify --postgres` proves it and names the
//! seq of a tampered row; a gateway whose PostgreSQL link is cut ships everything once it is back,
//! also when its queue overflowed meanwhile.
//!
//! Needs PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres); each test makes its own database
//! `fbt_h5_<pid>_<n>` and drops it. Redis (127.0.0.1:6379) is named in the policies but not needed.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fleet::TcpGate;
use common::{sha256_hex, Gateway};
use serde_json::{json, Value};

const ALICE: &str = "sk-fb-h5-alice-3f9c0d1e";
const STRAY: &str = "sk-fb-h5-stray-6d5c4b3a";
const PG: &str = "127.0.0.1:5432";

fn policy(fleet: &str) -> String {
    format!(
        r#"
[upstreams.scripted]
kind = "scripted"
chunk_chars = 16
chunk_delay_ms = 0

[[upstreams.scripted.replies]]
text = "Hello from the scripted upstream."

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "developer"

[roles.developer]
{fleet}
"#,
        alice = sha256_hex(ALICE),
    )
}

fn fleet_section(db: &str, pg_addr: &str, replica: &str, extra: &str) -> String {
    format!(
        r#"
[fleet]
postgres_url = "postgres://postgres@{pg_addr}/{db}"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "h5t{pid}"
replica_id = "{replica}"
connect_timeout = "1s"
{extra}
"#,
        pid = std::process::id(),
    )
}

async fn chat(g: &Gateway, key: &str) -> u16 {
    let resp = reqwest::Client::new()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

/// A database of its own, dropped with the value.
struct TestDb {
    name: String,
}

static DBS: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    /// Creates `fbt_h5_<pid>_<n>` with the fleet schema, recorded in `fleet_schema` as
    /// `fleet::db::migrate` does (so a replica with `migrate = "auto"` finds nothing to do).
    async fn new() -> TestDb {
        let name = format!("fbt_h5_{}_{}", std::process::id(), DBS.fetch_add(1, Ordering::Relaxed));
        let admin = connect("postgres").await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop old");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let c = connect(&name).await;
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS fleet_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)",
        )
        .await
        .expect("fleet_schema");
        for (version, sql) in firebreak::fleet::db::MIGRATIONS {
            c.batch_execute(sql).await.expect("migration");
            c.execute("INSERT INTO fleet_schema (version, applied_by) VALUES ($1, 'test')", &[version])
                .await
                .expect("record migration");
        }
        TestDb { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@{PG}/{}", self.name)
    }

    async fn client(&self) -> tokio_postgres::Client {
        connect(&self.name).await
    }

    /// (count(*), count(DISTINCT seq), max(seq)) of a replica's rows.
    async fn counts(&self, replica: &str) -> (i64, i64, i64) {
        let r = self
            .client()
            .await
            .query_one(
                "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM audit_records WHERE replica_id = $1",
                &[&replica],
            )
            .await
            .expect("counts");
        (r.get(0), r.get(1), r.get(2))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
    }
}

async fn connect(db: &str) -> tokio_postgres::Client {
    let (c, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port=5432 user=postgres dbname={db}"), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// The last record's seq in a trail.
fn last_seq(trail: &Path) -> i64 {
    let text = std::fs::read_to_string(trail).expect("trail");
    let last = text.lines().last().expect("a record");
    serde_json::from_str::<Value>(last).expect("json")["seq"].as_i64().expect("seq")
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak")).args(args).output().expect("run firebreak");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Ships `trail` for `replica` with the real shipper task and waits until it has shipped it all
/// (the writer side is closed at once, so the task ships the file and returns).
async fn ship_file(db: &TestDb, dir: &Path, trail: &Path, replica: &str) -> Arc<firebreak::fleet::Fleet> {
    let text = policy(&fleet_section(&db.name, PG, replica, ""));
    let p = firebreak::config::load_str("policy.toml", &text, dir).expect("policy");
    let settings = p.fleet.clone().expect("[fleet]");
    let fleet = firebreak::fleet::Fleet::new(settings, replica.to_owned()).expect("fleet");
    let (handle, queue) = firebreak::audit::shipper_channel(1 << 20);
    drop(handle);
    tokio::time::timeout(
        Duration::from_secs(60),
        firebreak::fleet::shipper::run(fleet.clone(), queue, trail.to_path_buf()),
    )
    .await
    .expect("the shipper finished within 60 s");
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_shipped_twice_is_stored_once_and_verifies_from_postgres() {
    // A real trail: a gateway (no fleet) serves a few requests and stops.
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy("")).expect("policy");
    let mut g = Gateway::spawn(tmp.path());
    for i in 0..6 {
        assert_eq!(chat(&g, if i % 3 == 2 { STRAY } else { ALICE }).await, if i % 3 == 2 { 401 } else { 200 });
    }
    g.terminate();
    assert!(g.wait_exit(Duration::from_secs(20)).is_some(), "the gateway stops");
    let trail = tmp.path().join("audit.jsonl");
    let key = firebreak::audit::default_key_path(&trail);
    let last = last_seq(&trail);
    assert!(last >= 6, "the gateway wrote its records ({last})");

    let db = TestDb::new().await;
    let f1 = ship_file(&db, tmp.path(), &trail, "r-1").await;
    assert_eq!(db.counts("r-1").await, (last, last, last));
    assert_eq!(f1.metrics.audit_shipped.load(Ordering::Relaxed), last as u64);
    assert_eq!(f1.status.shipped_seq.load(Ordering::Relaxed), last as u64);
    // Again (a restart, a crash before the bookkeeping): nothing new, no duplicates.
    let f2 = ship_file(&db, tmp.path(), &trail, "r-1").await;
    assert_eq!(db.counts("r-1").await, (last, last, last));
    assert_eq!(f2.metrics.audit_shipped.load(Ordering::Relaxed), 0, "the second run found everything shipped");

    // The indexed columns are extracted, and the line is the exact JSONL line.
    let c = db.client().await;
    let first_line = std::fs::read_to_string(&trail).expect("trail").lines().next().expect("line").to_owned();
    let row =
        c.query_one("SELECT line FROM audit_records WHERE replica_id = 'r-1' AND seq = 1", &[]).await.expect("row");
    assert_eq!(row.get::<_, String>(0), first_line);
    let alice: i64 = c
        .query_one("SELECT count(*) FROM audit_records WHERE user_id = 'alice' AND kind = 'request' AND request_id IS NOT NULL", &[])
        .await
        .expect("alice")
        .get(0);
    assert!(alice >= 4, "alice's four requests, by user_id ({alice})");
    let head: Value =
        c.query_one("SELECT audit_head FROM replicas WHERE replica_id = 'r-1'", &[]).await.expect("replica row").get(0);
    assert_eq!(head["seq"].as_i64(), Some(last), "the shipper reported the local head");

    let url = db.url();
    let key_arg = key.to_str().expect("utf-8 path");
    let (code, out) = cli(&["audit", "verify", "--postgres", &url, "--key-file", key_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("replica r-1: OK") && out.contains("head authenticated"), "{out}");
    assert!(!out.contains("postgres://"), "the URL is never printed: {out}");

    // Not shipped yet is not truncation: drop the last two rows, the head names a later seq.
    c.execute("DELETE FROM audit_records WHERE replica_id = 'r-1' AND seq > $1", &[&(last - 2)]).await.expect("delete");
    let (code, out) = cli(&["audit", "verify", "--postgres", &url, "--replica", "r-1", "--key-file", key_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 records not yet shipped (backlog)"), "{out}");
    // The shipper puts them back (a gap at the end is caught up from the file).
    ship_file(&db, tmp.path(), &trail, "r-1").await;
    assert_eq!(db.counts("r-1").await, (last, last, last));

    // The report reads the window from the table and names the replicas.
    let (code, out) = cli(&["report", "--postgres", &url, "--since", "1h", "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).expect("report JSON");
    assert_eq!(report["replicas"], json!(["r-1"]));
    assert_eq!(report["records"].as_i64(), Some(last));
    assert!(report["requests"].as_i64() >= Some(4), "{report}");

    // One edited row: verification fails and names its seq.
    let victim: i64 = c
        .query_one("SELECT min(seq) FROM audit_records WHERE replica_id = 'r-1' AND line LIKE '%\"status\":200%'", &[])
        .await
        .expect("victim")
        .get(0);
    c.execute(
        "UPDATE audit_records SET line = replace(line, '\"status\":200', '\"status\":500') WHERE replica_id = 'r-1' AND seq = $1",
        &[&victim],
    )
    .await
    .expect("tamper");
    let (code, out) = cli(&["audit", "verify", "--postgres", &url, "--key-file", key_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("TAMPERED at seq {victim}")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_ships_across_and_a_restarted_trail_is_reported_not_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(dir.join("old.key"), "11".repeat(32)).expect("key");
    std::fs::write(dir.join("new.key"), "22".repeat(32)).expect("key");
    let run = |audit: &'static str, n: usize| {
        let dir = dir.to_path_buf();
        async move {
            let text = policy("").replace("[roles.developer]", &format!("[roles.developer]\n\n[audit]\n{audit}"));
            std::fs::write(dir.join("policy.toml"), text).expect("policy");
            let mut g = Gateway::spawn(&dir);
            for _ in 0..n {
                assert_eq!(chat(&g, ALICE).await, 200);
            }
            g.terminate();
            assert!(g.wait_exit(Duration::from_secs(20)).is_some(), "the gateway stops");
        }
    };
    let trail = dir.join("audit.jsonl");
    let db = TestDb::new().await;
    run("key_file = \"old.key\"", 3).await;
    ship_file(&db, dir, &trail, "r-k").await;
    // The key rotates: the trail goes on in the same file with a key_rotated record.
    run("key_file = \"new.key\"\nprevious_key_file = \"old.key\"", 3).await;
    assert!(std::fs::read_to_string(&trail).expect("trail").contains("key_rotated"));
    ship_file(&db, dir, &trail, "r-k").await;
    let last = last_seq(&trail);
    assert_eq!(db.counts("r-k").await, (last, last, last));
    let (old, new) = (dir.join("old.key"), dir.join("new.key"));
    let (old, new) = (old.to_str().expect("utf-8"), new.to_str().expect("utf-8"));
    let (code, out) = cli(&["audit", "verify", "--postgres", &db.url(), "--key-file", old, "--key-file", new]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&["audit", "verify", "--postgres", &db.url(), "--key-file", new]);
    assert_eq!(code, 2, "the records before the rotation need the old key: {out}");

    // The trail is moved aside and a new one starts at seq 1 under the same replica id: its records
    // cannot be stored (the old rows stay), and the shipper says so.
    std::fs::rename(&trail, dir.join("old.jsonl")).expect("move the trail");
    std::fs::rename(dir.join("audit.jsonl.head"), dir.join("old.jsonl.head")).expect("move the head");
    run("key_file = \"new.key\"", 1).await;
    assert!(last_seq(&trail) < last);
    let f = ship_file(&db, dir, &trail, "r-k").await;
    assert_eq!(db.counts("r-k").await, (last, last, last), "nothing overwritten");
    let why = f.shipper.degraded(&f.status).join("; ");
    assert!(why.contains("moved aside or restarted"), "{why}");
}

async fn metric(g: &Gateway, name: &str) -> Option<f64> {
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", g.admin))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .ok()?;
    let text = resp.text().await.ok()?;
    text.lines().find(|l| l.starts_with(name) && !l.starts_with('#'))?.rsplit(' ').next()?.parse().ok()
}

/// A gateway in fleet mode loses PostgreSQL while it serves `n` requests; once the link is back
/// every record of its trail is in `audit_records` exactly once. Returns the overflow count.
async fn outage(queue: &str, n: usize) -> f64 {
    let db = TestDb::new().await;
    let relay = TcpGate::new(PG.parse().expect("postgres address"));
    let replica = "h5-outage";
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = format!("audit_queue_bytes = \"{queue}\"\naudit_batch = 50");
    std::fs::write(
        tmp.path().join("policy.toml"),
        policy(&fleet_section(&db.name, &relay.addr().to_string(), replica, &extra)),
    )
    .expect("policy");
    let mut g = Gateway::spawn(tmp.path());
    let trail = tmp.path().join("audit.jsonl");
    // The shipper is up: a first request's record arrives.
    assert_eq!(chat(&g, ALICE).await, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.counts(replica).await.0 == 0 {
        assert!(Instant::now() < deadline, "nothing shipped within 30 s:\n{}", g.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.cut();
    for _ in 0..n {
        assert_eq!(chat(&g, ALICE).await, 200, "requests are served while PostgreSQL is away");
    }
    let written = last_seq(&trail);
    assert!(db.counts(replica).await.0 < written, "the records written during the cut are not shipped yet");
    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written = last_seq(&trail);
        let (count, distinct, max) = db.counts(replica).await;
        if count == written && metric(&g, "firebreak_fleet_audit_backlog").await == Some(0.0) {
            assert_eq!((count, distinct, max), (written, written, written));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backlog not shipped within 60 s: {count} rows ({distinct} distinct, max {max}) of {written}:\n{}",
            g.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let overflow = metric(&g, "firebreak_fleet_audit_queue_overflow_total").await.unwrap_or(-1.0);
    // The shipped trail verifies against the head the replica reports (bounded: the heartbeat and
    // the shipper report it after their next round).
    let key = firebreak::audit::default_key_path(&trail);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out) =
            cli(&["audit", "verify", "--postgres", &db.url(), "--key-file", key.to_str().expect("utf-8")]);
        if code == 0 && out.contains("head authenticated") {
            assert!(out.contains(&format!("replica {replica}: OK")), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "audit verify --postgres: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    g.kill();
    overflow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_while_postgres_is_cut_are_shipped_once_it_is_back() {
    let overflow = outage("8MiB", 30).await;
    assert_eq!(overflow, 0.0, "an 8 MiB queue holds 30 records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_queue_is_caught_up_from_the_trail() {
    let overflow = outage("4KiB", 30).await;
    assert!(overflow > 0.0, "a 4 KiB queue overflowed ({overflow})");
}
