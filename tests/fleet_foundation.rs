//! Fleet mode's foundation (issue 14): `firebreak fleet migrate` (idempotent, safe when run
//! concurrently), a replica's heartbeat as seen by `GET /admin/v1/fleet`, `admin fleet` and
//! `fleet status`, `migrate = "manual"` on a missing schema, and a replica whose PostgreSQL is
//! unreachable: it starts, serves, and `/readyz` says degraded (`?strict`: 503).
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres); each run creates its own
//! database `fbt_h1_<pid>` and drops it at the end.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5";
/// In the URLs given to the gateway; it must never show up in its output.
const PASSWORD: &str = "h1pw-never-logged";

/// A database of this test's own, dropped on drop.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn create(tag: &str) -> TestDb {
        let name = format!("fbt_h1_{}_{tag}", std::process::id());
        let client = pg(PG_ADMIN).await;
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop old db");
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create db");
        TestDb { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:5432/{}", self.name)
    }

    async fn client(&self) -> tokio_postgres::Client {
        pg(&format!("host=127.0.0.1 port=5432 user=postgres dbname={} connect_timeout=5", self.name)).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async work on a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            })
        })
        .join();
    }
}

async fn pg(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

fn policy(extra: &str) -> String {
    format!(
        "[fleet]\npostgres_url_env = \"FB_H1_PG\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nredis_prefix = \"H1t\"\nheartbeat_interval = \"200ms\"\nlive_after = \"3s\"\nconnect_timeout = \"1s\"\n{extra}"
    )
}

/// `firebreak ARGS` with `env`: (success, stdout, stderr).
fn firebreak(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run firebreak");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The content hash of a one-file policy (`Policy.content_sha256`).
fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((text.len() as u64).to_be_bytes());
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

async fn readyz(g: &common::Gateway, query: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}/readyz{query}", g.admin)).await.expect("readyz");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_and_a_replica_heartbeats_into_the_fleet_view() {
    let db = TestDb::create("main").await;
    let url = db.url();
    let env = [("FB_H1_PG", url.as_str()), ("FIREBREAK_REPLICA_ID", "h1-replica-a")];
    let tmp = tempfile::tempdir().expect("tempdir");
    let policy_path = tmp.path().join("policy.toml");

    // migrate = "manual" on a database never migrated: the replica starts, degraded, and says why.
    std::fs::write(&policy_path, policy("migrate = \"manual\"\n")).expect("write policy");
    let g = tokio::task::block_in_place(|| common::Gateway::try_spawn_with_env(tmp.path(), &env)).expect("start");
    let (status, text) = readyz(&g, "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("degraded: ") && text.contains("run `firebreak fleet migrate`"), "{text}");
    let (status, _) = readyz(&g, "?strict").await;
    assert_eq!(status, 503);
    drop(g);

    // Three concurrent migrations of the empty database: all succeed, the schema is applied once.
    let policy_arg = policy_path.to_str().expect("utf-8 path").to_owned();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (p, u) = (policy_arg.clone(), url.clone());
            std::thread::spawn(move || firebreak(&["fleet", "migrate", "--policy", &p], &[("FB_H1_PG", &u)]))
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
    for (ok, out, err) in &outs {
        assert!(ok, "a concurrent migration failed: {out} {err}");
        assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
    }
    let client = db.client().await;
    let rows: i64 = client.query_one("SELECT count(*) FROM fleet_schema", &[]).await.expect("count").get(0);
    assert_eq!(rows, 1, "one schema row: {outs:?}");
    let tables: i64 = client
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_name = 'replicas'", &[])
        .await
        .expect("tables")
        .get(0);
    assert_eq!(tables, 1);

    // Twice more: nothing to do, and it says so.
    for _ in 0..2 {
        let (ok, out, err) = firebreak(&["fleet", "migrate", "--postgres", &url], &[]);
        assert!(ok, "{out} {err}");
        assert!(out.contains("up to date"), "{out}");
    }

    // A replica with automatic migrations heartbeats: it is listed live with its policy hash.
    let policy_text = policy("");
    std::fs::write(&policy_path, &policy_text).expect("write policy");
    let mut g = tokio::task::block_in_place(|| common::Gateway::try_spawn_with_env(tmp.path(), &env)).expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let view = loop {
        let (status, v) = g.admin(reqwest::Method::GET, "/admin/v1/fleet", None).await;
        let listed = v["replicas"].as_array().and_then(|l| l.iter().find(|r| r["id"] == "h1-replica-a").cloned());
        if status == 200 && listed.as_ref().is_some_and(|r| r["live"] == Value::Bool(true)) {
            break v;
        }
        assert!(Instant::now() < deadline, "the replica never showed up live: {status} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let me = &view["replicas"][0];
    assert_eq!(view["replicas"].as_array().map(Vec::len), Some(1), "{view}");
    assert_eq!(me["policy_hash"], Value::String(content_hash(&policy_text)), "{view}");
    assert_eq!(me["policy_mismatch"], false);
    assert_eq!(me["pid"], g.pid());
    assert_eq!(me["address"], g.proxy.trim_start_matches("http://"), "the proxy listener as bound");
    assert_eq!(view["mismatch"], false);
    assert_eq!(view["this_replica"], "h1-replica-a");
    assert_eq!(view["policy_hashes"][content_hash(&policy_text)], serde_json::json!(["h1-replica-a"]));

    // PostgreSQL is up: /readyz names no PostgreSQL problem, and the metrics say so too.
    let (status, text) = readyz(&g, "").await;
    assert_eq!(status, 200);
    assert!(!text.contains("postgres"), "{text}");
    let (_, metrics) = g.admin(reqwest::Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("firebreak_fleet_pg_up 1\n"), "{metrics}");
    assert!(metrics.contains("firebreak_fleet_live_replicas 1\n"), "{metrics}");
    assert!(metrics.contains("firebreak_fleet_degraded{reason=\"postgres\"} 0\n"), "{metrics}");
    assert!(metrics.contains("firebreak_fleet_propagation_seconds_bucket{le=\"+Inf\"} 0\n"), "{metrics}");

    // The CLIs: `admin fleet` prints the table (exit 0), `fleet status` reads the database.
    let (ok, out, err) = g.cli(&["admin", "fleet"]);
    assert!(ok, "{out} {err}");
    assert!(out.contains("h1-replica-a") && out.contains("1 of 1 replicas live"), "{out}");
    let (ok, out, err) = firebreak(&["fleet", "status", "--policy", &policy_arg], &[("FB_H1_PG", &url)]);
    assert!(ok, "{out} {err}");
    assert!(out.contains("schema version 1") && out.contains("h1-replica-a"), "{out}");
    assert!(!g.stderr().contains(PASSWORD), "the URL's password reached the log");

    // A second process with the same replica id: both say so (the newcomer at its first heartbeat,
    // the first one when it finds its row written by another process).
    let tmp2 = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp2.path().join("policy.toml"), &policy_text).expect("write policy");
    let twin = tokio::task::block_in_place(|| common::Gateway::try_spawn_with_env(tmp2.path(), &env)).expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(twin.stderr().contains("two replicas with one id") && g.stderr().contains("two replicas with one id")) {
        assert!(
            Instant::now() < deadline,
            "no clash reported:\n--- first\n{}\n--- twin\n{}",
            g.stderr(),
            twin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(twin);
    // The row is ours again once the first replica heartbeats after the twin is gone (a graceful
    // stop only marks a row its own process wrote).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pid: i32 = client
            .query_one("SELECT pid FROM replicas WHERE replica_id = 'h1-replica-a'", &[])
            .await
            .expect("row")
            .get(0);
        if u32::try_from(pid).ok() == Some(g.pid()) {
            break;
        }
        assert!(Instant::now() < deadline, "the first replica never heartbeated after the twin stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A graceful stop: the replica leaves, and is listed as not live at once (not after live_after).
    g.terminate();
    let exited = tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(30)));
    assert!(exited.is_some(), "no exit after SIGTERM");
    let live: bool = client
        .query_one(
            "SELECT last_seen > now() - interval '3 seconds' FROM replicas WHERE replica_id = 'h1-replica-a'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert!(!live, "a stopped replica still counts as live");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_database_is_unreachable_starts_serves_and_is_degraded() {
    // A closed port: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/nothing");
    let started = Instant::now();
    let g = tokio::task::block_in_place(|| common::Gateway::start_with_env(&policy(""), &[("FB_H1_PG", url.as_str())]));
    assert!(started.elapsed() < Duration::from_secs(20), "the start waited on the database");
    let (status, text) = readyz(&g, "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("degraded: ") && text.contains("postgres unreachable"), "{text}");
    let (status, _) = readyz(&g, "?strict").await;
    assert_eq!(status, 503);
    // It serves: the proxy answers (no key: refused by the gateway itself), the admin API too.
    let r =
        reqwest::Client::new().post(g.url("/v1/chat/completions")).body("{}").send().await.expect("the proxy answers");
    assert!(r.status().is_client_error(), "{}", r.status());
    let (status, _) = g.admin(reqwest::Method::GET, "/admin/v1/state", None).await;
    assert_eq!(status, 200);
    let (status, v) = g.admin(reqwest::Method::GET, "/admin/v1/fleet", None).await;
    assert_eq!(status, 503, "{v}");
    let (_, metrics) = g.admin(reqwest::Method::GET, "/metrics", None).await;
    assert!(metrics.as_str().unwrap_or_default().contains("firebreak_fleet_degraded{reason=\"postgres\"} 1\n"));
    assert!(!g.stderr().contains(PASSWORD), "the URL's password reached the log");
}

#[test]
fn a_missing_url_variable_stops_the_start_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy("")).expect("write policy");
    let err = match common::Gateway::try_spawn_with_env(tmp.path(), &[("FB_H1_PG", "")]) {
        Ok(_) => panic!("a replica without its database URL started"),
        Err(e) => e,
    };
    assert!(err.contains("[fleet]: postgres_url: environment variable FB_H1_PG is not set or empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_has_no_fleet_view() {
    let g = tokio::task::block_in_place(|| common::Gateway::start(""));
    let (status, v) = g.admin(reqwest::Method::GET, "/admin/v1/fleet", None).await;
    assert_eq!(status, 404);
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("fleet mode is off"), "{v}");
    assert_eq!(readyz(&g, "?strict").await, (200, "ready\n".to_owned()));
}
