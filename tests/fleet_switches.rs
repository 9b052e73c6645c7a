//! Fleet mode, switches: a batch committed through one replica reaches the others; concurrent batches
//! with the same `expect_version` have exactly one winner; a replica restarted without its database
//! still enforces the last lockdown (fail-static, from its local file); break-glass on one replica
//! with the database unreachable (and on a single node). Real processes, real PostgreSQL on
//! 127.0.0.1:5432 (`FIREBREAK_TEST_PG`), one database per test (`fbt_h2_<pid>_<n>`).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{sha256_hex, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

const ALICE: &str = "sk-fb-alice-5e1f0c2a";

fn admin_pg_url() -> String {
    std::env::var("FIREBREAK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own, with the fleet schema; dropped at the end.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("fbt_h2_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let admin = connect(&admin_pg_url()).await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop old db");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create db");
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let db = connect(&url).await;
        // The schema as `fleet::db::migrate` leaves it (version 1 recorded), so an automatic migration
        // at start finds nothing to do.
        db.batch_execute(
            "CREATE TABLE IF NOT EXISTS fleet_schema (version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL)",
        )
        .await
        .expect("fleet_schema");
        db.batch_execute(include_str!("../src/fleet/sql/001_init.sql")).await.expect("schema 001");
        db.batch_execute("INSERT INTO fleet_schema (version, applied_by) VALUES (1, 'test')")
            .await
            .expect("schema row");
        TestDb { name, url }
    }

    async fn sql(&self, q: &str) -> Vec<tokio_postgres::Row> {
        connect(&self.url).await.query(q, &[]).await.expect("query")
    }

    async fn drop_db(self) {
        let admin = connect(&admin_pg_url()).await;
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!("fleet tests need PostgreSQL on 127.0.0.1:5432 (run `bash tests/fleet-services.sh`): {e}")
    });
    tokio::spawn(conn);
    client
}

/// A URL nothing listens on (a port bound and released).
fn closed_pg_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn policy(tag: &str) -> String {
    format!(
        r#"
[upstreams.scripted]
kind = "scripted"

[[upstreams.scripted.replies]]
text = "Hello from the scripted upstream."

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "developer"

[roles.developer]

[fleet]
postgres_url_env = "H2_PG_URL"
redis_url = "redis://127.0.0.1:6379/"
redis_prefix = "h2{tag}"
connect_timeout = "500ms"
poll_interval = "500ms"
heartbeat_interval = "250ms"
live_after = "2s"
"#,
        alice = sha256_hex(ALICE),
    )
}

/// Starts a replica in its own dir on `policy`, its database at `pg_url`.
fn replica(policy: &str, id: &str, pg_url: &str) -> Gateway {
    Gateway::start_with_env(policy, &[("H2_PG_URL", pg_url), ("FIREBREAK_REPLICA_ID", id)])
}

/// The same replica started again on its dir (state and audit kept), with another database URL.
fn respawn(g: &mut Gateway, id: &str, pg_url: &str) -> Gateway {
    g.kill();
    Gateway::try_spawn_with_env(&g.dir, &[("H2_PG_URL", pg_url), ("FIREBREAK_REPLICA_ID", id)])
        .unwrap_or_else(|m| panic!("{m}"))
}

async fn state(g: &Gateway) -> Value {
    let (status, body) = g.admin(Method::GET, "/admin/v1/state", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until `g`'s state satisfies `f`; the last state otherwise (the caller asserts).
async fn wait_state(g: &Gateway, within: Duration, f: impl Fn(&Value) -> bool) -> (bool, Value, Duration) {
    let start = Instant::now();
    loop {
        let s = state(g).await;
        if f(&s) {
            return (true, s, start.elapsed());
        }
        if start.elapsed() > within {
            return (false, s, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chat(g: &Gateway) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn batch(level: &str, expect: Option<u64>) -> Value {
    let mut b = json!({"actions": [{"action": "set_level", "level": level}], "reason": "fleet test"});
    if let Some(v) = expect {
        b["expect_version"] = json!(v);
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_on_a_is_enforced_on_b() {
    let db = TestDb::create().await;
    let p = policy("vis");
    let a = replica(&p, "A", &db.url);
    let b = replica(&p, "B", &db.url);
    let v0 = state(&a).await["version"].as_u64().expect("version");
    let (status, body) = a.switches(batch("lockdown", Some(v0))).await;
    assert_eq!(status, 200, "{body}");
    let v1 = body["version"].as_u64().expect("version");
    assert_eq!(v1, v0 + 1);
    let (ok, s, took) = wait_state(&b, Duration::from_secs(3), |s| s["version"] == json!(v1)).await;
    assert!(ok, "B did not reach version {v1} within 3 s: {s}");
    println!("propagated to B in {took:?}");
    assert_eq!(s["level"], "lockdown");
    let (status, body) = chat(&b).await;
    assert_eq!(status, 503, "B must refuse in lockdown: {body}");
    // The shared row and its batch record.
    let rows = db.sql("SELECT version, snapshot->>'level' FROM switch_state").await;
    assert_eq!(rows[0].get::<_, i64>(0) as u64, v1);
    assert_eq!(rows[0].get::<_, Option<String>>(1).as_deref(), Some("lockdown"));
    let rows = db.sql(&format!("SELECT replica_id, actor FROM switch_batches WHERE version = {v1}")).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "A");
    // B's own trail says from when it enforced which version.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let trail = std::fs::read_to_string(b.dir.join("audit.jsonl")).unwrap_or_default();
        let applied = trail
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["kind"] == "switch" && r["event"] == "fleet_applied" && r["version"] == json!(v1));
        if let Some(r) = applied {
            assert_eq!(r["from_replica"], "A", "{r}\n{}", b.stderr());
            break;
        }
        assert!(Instant::now() < deadline, "no fleet_applied record for v{v1} in B's trail:\n{trail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back to normal from B: A follows.
    let (status, body) = b.switches(batch("normal", Some(v1))).await;
    assert_eq!(status, 200, "{body}");
    let (ok, s, _) = wait_state(&a, Duration::from_secs(3), |s| s["version"] == json!(v1 + 1)).await;
    assert!(ok && s["level"] == "normal", "A did not follow B: {s}");
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_version_race_has_one_winner() {
    let db = TestDb::create().await;
    let p = policy("race");
    let a = replica(&p, "A", &db.url);
    let b = replica(&p, "B", &db.url);
    let v = state(&a).await["version"].as_u64().expect("version");
    let (ok, s, _) = wait_state(&b, Duration::from_secs(3), |s| s["version"] == json!(v)).await;
    assert!(ok, "B not in sync before the race: {s}");
    let levels = ["elevated", "critical", "lockdown", "elevated", "critical", "lockdown", "elevated", "critical"];
    let tasks: Vec<_> = levels
        .iter()
        .enumerate()
        .map(|(i, level)| {
            let g = if i % 2 == 0 { (a.admin.clone(), "A") } else { (b.admin.clone(), "B") };
            let body = batch(level, Some(v));
            tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .post(format!("{}/admin/v1/switches", g.0))
                    .bearer_auth(common::ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("post");
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    let ok: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
    let conflicts = results.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!(ok.len(), 1, "exactly one winner: {results:?}");
    assert_eq!(conflicts, 7, "seven conflicts: {results:?}");
    for (_, body) in results.iter().filter(|(s, _)| *s == 409) {
        assert_eq!(body["error"]["code"], "version_conflict", "{body}");
        assert_eq!(body["error"]["current_version"], json!(v + 1), "{body}");
    }
    let rows = db.sql(&format!("SELECT count(*) FROM switch_batches WHERE version = {}", v + 1)).await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    let rows = db.sql("SELECT count(*) FROM switch_batches").await;
    assert_eq!(rows[0].get::<_, i64>(0), 1, "no other batch committed");
    let winner_level = ok[0].1["state"]["level"].clone();
    for g in [&a, &b] {
        let (ok, s, _) = wait_state(g, Duration::from_secs(3), |s| s["version"] == json!(v + 1)).await;
        assert!(ok, "replica not at v{}: {s}", v + 1);
        assert_eq!(s["level"], winner_level);
    }
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_database_down_still_enforces_lockdown() {
    let db = TestDb::create().await;
    let p = policy("static");
    let a = replica(&p, "A", &db.url);
    let mut b = replica(&p, "B", &db.url);
    let (status, body) = a.switches(batch("lockdown", None)).await;
    assert_eq!(status, 200, "{body}");
    let v = body["version"].as_u64().expect("version");
    let (ok, s, _) = wait_state(&b, Duration::from_secs(3), |s| s["version"] == json!(v)).await;
    assert!(ok, "B not at v{v}: {s}");
    // B restarts and cannot reach any database: it enforces what its local file has.
    let down = closed_pg_url();
    let b2 = respawn(&mut b, "B", &down);
    let s = state(&b2).await;
    assert_eq!(s["version"], json!(v), "{s}");
    assert_eq!(s["level"], "lockdown", "a restart without the database must not lift the lockdown: {s}");
    let (status, body) = chat(&b2).await;
    assert_eq!(status, 503, "{body}");
    // A change on B is refused (nothing is changed locally behind the fleet's back).
    let (status, body) = b2.switches(batch("normal", None)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "fleet_unavailable", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("--local"), "the refusal names break-glass: {msg}");
    assert!(msg.contains(&format!("version {v}")), "the refusal says what holds: {msg}");
    assert!(!msg.contains("postgres://"), "never a URL: {msg}");
    let s = state(&b2).await;
    assert_eq!(s["level"], "lockdown");
    drop((a, b2));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_with_database_unreachable() {
    let db = TestDb::create().await;
    let p = policy("glass");
    let b = replica(&p, "B", &db.url);
    // A cannot reach PostgreSQL at all.
    let a = replica(&p, "A", &closed_pg_url());
    let (status, body) = a.switches(batch("lockdown", None)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "fleet_unavailable", "{body}");
    // Loosening is refused locally.
    let (status, body) = a
        .admin(
            Method::POST,
            "/admin/v1/local/switches",
            Some(json!({"actions": [{"action": "safe_mode", "enabled": false}], "reason": "x"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (ok, out, err) = a.cli(&["admin", "--local", "--reason", "db down, contain here", "level", "lockdown"]);
    assert!(ok, "admin --local level lockdown failed: {out}{err}");
    assert_eq!(chat(&a).await.0, 503, "A refuses under its local lockdown");
    assert_eq!(chat(&b).await.0, 200, "B is not affected");
    let s = state(&a).await;
    assert_eq!(s["level"], "lockdown");
    assert_eq!(s["local_override"]["entries"][0]["origin"]["kind"], "break_glass", "{s}");
    let (ok, out, _) = a.cli(&["admin", "--local", "state"]);
    assert!(ok && out.contains("local_override"), "{out}");
    // Other commands are refused with --local.
    let (ok, _, err) = a.cli(&["admin", "--local", "block-user", "bob"]);
    assert!(!ok && err.contains("--local"), "{err}");
    let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap_or_default();
    assert!(
        trail.lines().any(|l| l.contains("\"local_override\"") && l.contains("\"scope\":\"replica\"")),
        "the override is audited locally:\n{trail}"
    );
    // It survives a restart (still without the database).
    let mut a = a;
    let a = respawn(&mut a, "A", &closed_pg_url());
    assert_eq!(chat(&a).await.0, 503, "the override is kept across a restart");
    let (ok, out, err) = a.cli(&["admin", "--local", "lift"]);
    assert!(ok, "lift failed: {out}{err}");
    assert_eq!(chat(&a).await.0, 200, "lifted: A serves again");
    let s = state(&a).await;
    assert!(s.get("local_override").is_none(), "{s}");
    let trail = std::fs::read_to_string(a.dir.join("audit.jsonl")).unwrap_or_default();
    assert!(trail.contains("local_override_lifted"), "{trail}");
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_on_a_single_node() {
    let p = policy("single");
    let p = p.split("[fleet]").next().unwrap_or_default().to_owned();
    let g = Gateway::start(&p);
    let (status, body) = g
        .admin(
            Method::POST,
            "/admin/v1/local/switches",
            Some(json!({"actions": [{"action": "block_user", "user": "alice"}], "reason": "contain"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().expect("id");
    assert_eq!(chat(&g).await.0, 403, "alice blocked by the overlay");
    let s = state(&g).await;
    assert_eq!(s["version"], body["version"], "the overlay does not bump the version");
    // A normal batch keeps the overlay in force.
    let (status, body) = g.switches(batch("elevated", None)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["state"]["blocked_users"].get("alice").is_some(), "{body}");
    let (status, body) = g.admin(Method::DELETE, "/admin/v1/local/switches/99", None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = g.admin(Method::DELETE, &format!("/admin/v1/local/switches/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lifted"], json!([id]));
    assert_eq!(chat(&g).await.0, 200);
    assert_eq!(state(&g).await["level"], "elevated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_issue_one_canary() {
    let db = TestDb::create().await;
    let p = policy("canary") + "\n[prompts.ops]\ntext = \"You are the operations assistant. Keep answers short.\"\n";
    let url = db.url.clone();
    let starts: Vec<_> = ["A", "B", "C"]
        .into_iter()
        .map(|id| {
            let (p, url) = (p.clone(), url.clone());
            std::thread::spawn(move || replica(&p, id, &url))
        })
        .collect();
    let gws: Vec<Gateway> = starts.into_iter().map(|t| t.join().expect("start")).collect();
    let rows = db.sql("SELECT count(*) FROM switch_batches WHERE actor = 'firebreak'").await;
    assert_eq!(rows[0].get::<_, i64>(0), 1, "one first canary for the fleet, not one per replica");
    let rows = db.sql("SELECT version, canaries::text FROM switch_state").await;
    let v = rows[0].get::<_, i64>(0) as u64;
    let canaries: Value = serde_json::from_str(&rows[0].get::<_, String>(1)).expect("json");
    assert!(canaries.get("ops").is_some(), "the canary is in the shared row: {canaries}");
    let snapshot = db.sql("SELECT snapshot::text FROM switch_state").await;
    assert!(!snapshot[0].get::<_, String>(0).contains("canary_values"), "never in the snapshot column");
    for g in &gws {
        let (ok, s, _) = wait_state(g, Duration::from_secs(3), |s| s["version"] == json!(v)).await;
        assert!(ok, "replica not at v{v}: {s}");
        // Its local file holds the fleet's canary (fail-static includes detection).
        let file: Value = serde_json::from_str(&std::fs::read_to_string(g.dir.join("state.json")).expect("state file"))
            .expect("json");
        assert_eq!(file["canary_values"], canaries, "{}", g.stderr());
    }
    drop(gws);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_all_reports_laggards() {
    let db = TestDb::create().await;
    let p = policy("wait");
    let a = replica(&p, "A", &db.url);
    // The heartbeat's rows, as the replicas table would hold them: A itself, and a live replica C that
    // never applies anything.
    for (id, applied) in [("A", 0), ("C", 0)] {
        db.sql(&format!(
            "INSERT INTO replicas (replica_id, address, pid, binary_version, started_at, last_seen, applied_version, \
             policy_hash) VALUES ('{id}', '127.0.0.1:1', 1, 'test', now(), now() + interval '1 hour', {applied}, 'x') \
             ON CONFLICT (replica_id) DO UPDATE SET last_seen = EXCLUDED.last_seen"
        ))
        .await;
    }
    let (status, body) =
        a.admin(Method::POST, "/admin/v1/switches?wait=all&timeout=300ms", Some(batch("elevated", None))).await;
    assert_eq!(status, 200, "committed either way: {body}");
    let v = body["version"].as_u64().expect("version");
    let fleet = &body["fleet"];
    assert_eq!(fleet["complete"], false, "{body}");
    assert_eq!(fleet["version"], json!(v));
    assert!(fleet["waited_ms"].as_u64().expect("waited_ms") >= 250, "{body}");
    let laggards: Vec<&str> =
        fleet["laggards"].as_array().expect("laggards").iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(laggards, ["C"], "{body}");
    let (status, body) =
        a.admin(Method::POST, "/admin/v1/switches?wait=sometimes", Some(batch("elevated", None))).await;
    assert_eq!(status, 400, "{body}");
    // The CLI exits 3 and names the laggard.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["admin", "--wait-all=300ms", "--reason", "x", "level", "critical"])
        .env("FIREBREAK_ADMIN_URL", &a.admin)
        .env("FIREBREAK_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .output()
        .expect("run firebreak");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains('C'), "{err}");
    // C gone: complete.
    db.sql("DELETE FROM replicas WHERE replica_id = 'C'").await;
    let (ok, out, err) = a.cli(&["admin", "--wait-all", "--reason", "x", "level", "normal"]);
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["fleet"]["complete"], true, "{v}");
    drop(a);
    db.drop_db().await;
}

/// Forwards `127.0.0.1:port` to PostgreSQL from now on (the database "comes back" for a replica
/// started with that port closed).
async fn open_gate(port: u16) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind the closed port");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut s) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_containment_while_the_database_is_down_is_replayed_when_it_returns() {
    const CANARY: &str = "fbQ7kX2mZp9RtL4w";
    let db = TestDb::create().await;
    let p = policy("offline").replace(
        "[[upstreams.scripted.replies]]\ntext = \"Hello",
        &format!(
            "[[upstreams.scripted.replies]]\nwhen_contains = \"leak-plain\"\ntext = \"Sure, the marker is {CANARY}.\"\n\n\
             [[upstreams.scripted.replies]]\ntext = \"Hello"
        ),
    ) + &format!("\n[[redaction.canaries]]\nid = \"support-prompt\"\nvalue = \"{CANARY}\"\n");
    let b = replica(&p, "B", &db.url);
    let down = closed_pg_url();
    let port: u16 =
        down.rsplit(':').next().and_then(|s| s.split('/').next()).and_then(|s| s.parse().ok()).expect("port");
    let url_via_gate = format!("postgres://postgres@127.0.0.1:{port}/{}", db.name);
    let a = replica(&p, "A", &url_via_gate);
    // The canary leaks through A: SEV-1, contained at once on A although the fleet is unreachable.
    let resp = reqwest::Client::new()
        .post(a.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "leak-plain"}]}))
        .send()
        .await
        .expect("chat");
    let _ = resp.text().await;
    let s = state(&a).await;
    assert_eq!(s["local_override"]["entries"][0]["origin"]["kind"], "offline_containment", "{s}\n{}", a.stderr());
    assert!(s["blocked_users"].get("alice").is_some(), "{s}");
    assert_eq!(chat(&a).await.0, 403, "alice contained on A");
    assert_eq!(chat(&b).await.0, 200, "not yet on B: the fleet never heard of it");
    // The database returns for A: the containment is committed fleet-wide and leaves the overlay.
    let gate = open_gate(port).await;
    let (ok, s, took) = wait_state(&b, Duration::from_secs(10), |s| s["blocked_users"].get("alice").is_some()).await;
    assert!(ok, "B never got the replayed containment: {s}\n{}", a.stderr());
    println!("replayed and propagated in {took:?}");
    let rows = db.sql("SELECT actor, reason FROM switch_batches").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "firebreak");
    assert!(rows[0].get::<_, String>(1).starts_with("replayed after outage: "));
    let (ok, s, _) = wait_state(&a, Duration::from_secs(3), |s| s.get("local_override").is_none()).await;
    assert!(ok, "the replayed entry leaves A's overlay: {s}");
    assert!(s["blocked_users"].get("alice").is_some(), "{s}");
    assert_eq!(chat(&b).await.0, 403);
    gate.abort();
    drop((a, b));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notifications_are_caught_by_the_poll_and_listen_reconnects() {
    let db = TestDb::create().await;
    let p = policy("lost");
    let a = replica(&p, "A", &db.url);
    let c = Gateway::start_with_env(
        &p,
        &[("H2_PG_URL", &db.url), ("FIREBREAK_REPLICA_ID", "C"), ("FIREBREAK_FLEET_FAILPOINT", "ignore_notify")],
    );
    let d = replica(&p, "D", &db.url);
    let (status, body) = a.switches(batch("critical", None)).await;
    assert_eq!(status, 200, "{body}");
    let v = body["version"].as_u64().expect("version");
    // C hears nothing: the poll (every 500 ms) brings it there.
    let (ok, s, took) = wait_state(&c, Duration::from_millis(1500), |s| s["version"] == json!(v)).await;
    assert!(ok, "C (ignore_notify) not at v{v} within poll_interval + 1 s: {s}");
    println!("caught up by the poll in {took:?}");
    assert!(c.stderr().contains("the poll installed"), "{}", c.stderr());
    // D's LISTEN backend is terminated: it reconnects, and still follows.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = db
            .sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'firebreak-listen:D' AND datname = current_database()")
            .await;
        if !rows.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "D never had a LISTEN connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = a.switches(batch("elevated", None)).await;
    assert_eq!(status, 200, "{body}");
    let v = body["version"].as_u64().expect("version");
    let (ok, s, _) = wait_state(&d, Duration::from_millis(1500), |s| s["version"] == json!(v)).await;
    assert!(ok, "D not at v{v} after its LISTEN backend was terminated: {s}");
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let rows =
            db.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'firebreak-listen:D' AND datname = current_database()").await;
        if rows[0].get::<_, i64>(0) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "D did not reconnect its LISTEN connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, c, d));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_commit_changes_nothing_after_commit_reaches_everyone() {
    let db = TestDb::create().await;
    let p = policy("kill");
    let b = replica(&p, "B", &db.url);
    let env = |fp: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("H2_PG_URL", db.url.clone()),
            ("FIREBREAK_REPLICA_ID", "A".into()),
            ("FIREBREAK_FLEET_FAILPOINT", fp.into()),
        ]
    };
    let spawn = |dir: Option<&std::path::Path>, fp: &'static str| -> Gateway {
        let e = env(fp);
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match dir {
            Some(d) => Gateway::try_spawn_with_env(d, &e).unwrap_or_else(|m| panic!("{m}")),
            None => Gateway::start_with_env(&p, &e),
        }
    };
    let mut a = spawn(None, "pause_before_commit=3000");
    let v = state(&b).await["version"].as_u64().expect("version");
    let admin = a.admin.clone();
    let post = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{admin}/admin/v1/switches"))
            .bearer_auth(common::ADMIN_TOKEN)
            .json(&batch("lockdown", None))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // Wait until A's transaction holds the row (its UPDATE done, COMMIT pending), then kill it.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let rows = db
            .sql("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid \
                  WHERE s.application_name = 'firebreak:A' AND s.datname = current_database() AND l.mode = 'RowExclusiveLock'")
            .await;
        if rows[0].get::<_, i64>(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "A's transaction never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill();
    assert!(post.await.expect("task").is_err(), "the killed replica cannot answer");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = db.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'firebreak:A' AND datname = current_database()").await;
        if rows[0].get::<_, i64>(0) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "A's backend did not go away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = db.sql("SELECT version FROM switch_state").await;
    assert_eq!(rows[0].get::<_, i64>(0) as u64, v, "nothing committed");
    assert_eq!(db.sql("SELECT count(*) FROM switch_batches").await[0].get::<_, i64>(0), 0);
    assert_eq!(state(&b).await["version"], json!(v));
    // After the commit: everyone gets it, the restarted A too (from the database, its file is older).
    let dir = a.dir.clone();
    let mut a = spawn(Some(&dir), "pause_after_commit=3000");
    let admin = a.admin.clone();
    let post = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{admin}/admin/v1/switches"))
            .bearer_auth(common::ADMIN_TOKEN)
            .json(&batch("lockdown", None))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let (ok, s, _) = wait_state(&b, Duration::from_secs(3), |s| s["version"] == json!(v + 1)).await;
    assert!(ok, "B did not get the committed batch: {s}");
    a.kill();
    let _ = post.await;
    let a = spawn(Some(&dir), "");
    let s = state(&a).await;
    assert_eq!(s["version"], json!(v + 1), "{s}");
    assert_eq!(s["level"], "lockdown");
    drop((a, b));
    db.drop_db().await;
}
