//! Fleet mode, the shared books (design §8, §10): incidents opened once fleet-wide and listed the
//! same from every replica, MCP sessions usable through any replica by their key only, and
//! credential rotation / reload run on every replica by one admin call.
//!
//! Needs PostgreSQL and Redis on loopback (`bash tests/fleet-services.sh`); each test has its own
//! database `fbt_h4_<pid>_<n>` and Redis prefix, and three real `firebreak serve` processes A, B, C.

mod common;
mod upstream;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::fleet::TcpGate;
use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use serde_json::{json, Value};
use upstream::mcp::{McpClient, McpServer, PROTOCOL_VERSION};
use upstream::{chat_json, FakeUpstream, Reply};

const ALICE: &str = "fbk-fleet-book-alice-5c1e";
const BOB: &str = "fbk-fleet-book-bob-93d0";
const CANARY: &str = "fbQ7kX2mZp9RtL4w";
const PG_ENV: &str = "FIREBREAK_POSTGRES_URL";
const REDIS_ENV: &str = "FIREBREAK_REDIS_URL";
const IDS: [&str; 3] = ["A", "B", "C"];

fn pg_admin_url() -> String {
    std::env::var("FIREBREAK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("FIREBREAK_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn url_of(db: &str) -> String {
    let base = pg_admin_url();
    match base.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{db}"),
        None => base,
    }
}

/// Runs a future on a runtime of its own, in a thread of its own (usable from `Drop` and sync code).
fn block<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f))
            .join()
            .expect("block: the future panicked")
    })
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!("fleet tests need PostgreSQL and Redis on loopback: run `bash tests/fleet-services.sh` ({e})")
    });
    tokio::spawn(conn);
    c
}

/// A database of its own, dropped at the end.
struct Db {
    name: String,
}

impl Db {
    fn create() -> Db {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("fbt_h4_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let n = name.clone();
        block(async move {
            let c = connect(&pg_admin_url()).await;
            c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)")).await.expect("drop");
            c.batch_execute(&format!("CREATE DATABASE {n}")).await.expect("create");
        });
        Db { name }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let n = self.name.clone();
        block(async move {
            let c = connect(&pg_admin_url()).await;
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)")).await;
        });
    }
}

/// The address of the PostgreSQL server the tests use.
fn pg_addr() -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = pg_admin_url();
    let after = url.rsplit_once('@').map_or(url.as_str(), |(_, h)| h);
    let hostport = after.split('/').next().unwrap_or("127.0.0.1:5432");
    let hostport = if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:5432") };
    hostport.to_socket_addrs().expect("PostgreSQL address").next().expect("an address")
}

/// `url_of(db)` through `gate`.
fn url_through(gate: &TcpGate, db: &str) -> String {
    let url = url_of(db);
    let (head, rest) = url.split_once("://").expect("a URL");
    let (auth, tail) = match rest.rsplit_once('@') {
        Some((a, t)) => (format!("{a}@"), t),
        None => (String::new(), rest),
    };
    let path = tail.split_once('/').map_or("", |(_, p)| p);
    format!("{head}://{auth}{}/{path}", gate.addr())
}

/// Three replicas on one database. Fields drop in order: the processes, then their directories.
struct Fleet {
    gws: Vec<Gateway>,
    db: Db,
    /// In front of PostgreSQL for every replica (`start_gated`).
    gate: Option<TcpGate>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    /// Starts A, B, C on `body` + a `[fleet]` section, with `env` for every replica, and waits until
    /// the three are live in the `replicas` table.
    fn start(body: &str, env: &[(&str, &str)]) -> Fleet {
        Fleet::launch(body, env, false)
    }

    /// Like [`Fleet::start`], every replica reaching PostgreSQL through one [`TcpGate`].
    fn start_gated(body: &str) -> Fleet {
        Fleet::launch(body, &[], true)
    }

    fn launch(body: &str, env: &[(&str, &str)], gated: bool) -> Fleet {
        static N: AtomicU32 = AtomicU32::new(0);
        let db = Db::create();
        let gate = gated.then(|| TcpGate::new(pg_addr()));
        let prefix = format!("h4fbt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let policy = format!(
            "{body}\n[fleet]\npostgres_url_env = \"{PG_ENV}\"\nredis_url_env = \"{REDIS_ENV}\"\nredis_prefix = \"{prefix}\"\n\
             poll_interval = \"500ms\"\nheartbeat_interval = \"250ms\"\nlive_after = \"2s\"\nwait_timeout = \"5s\"\n"
        );
        let pg = match &gate {
            Some(g) => url_through(g, &db.name),
            None => url_of(&db.name),
        };
        let redis = redis_url();
        let mut gws = Vec::new();
        let mut dirs = Vec::new();
        for id in IDS {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("policy.toml"), &policy).expect("policy");
            let mut e: Vec<(&str, &str)> =
                vec![("FIREBREAK_REPLICA_ID", id), (PG_ENV, pg.as_str()), (REDIS_ENV, redis.as_str())];
            e.extend_from_slice(env);
            let gw = Gateway::try_spawn_with_env(dir.path(), &e).unwrap_or_else(|m| panic!("replica {id}: {m}"));
            gws.push(gw);
            dirs.push(dir);
        }
        let fleet = Fleet { gws, db, gate, _dirs: dirs };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let live = fleet.sql_i64("SELECT count(*) FROM replicas WHERE last_seen > now() - interval '2 seconds'");
            if live == 3 {
                return fleet;
            }
            assert!(Instant::now() < deadline, "3 replicas not live within 20 s (live: {live})\n{}", fleet.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sql(&self, q: &str) -> Vec<tokio_postgres::Row> {
        let (url, q) = (url_of(&self.db.name), q.to_owned());
        block(async move { connect(&url).await.query(&q, &[]).await.expect("query") })
    }

    fn sql_i64(&self, q: &str) -> i64 {
        let (url, q) = (url_of(&self.db.name), q.to_owned());
        block(async move { connect(&url).await.query_one(&q, &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(-1) })
    }

    fn logs(&self) -> String {
        self.gws.iter().zip(IDS).map(|(g, id)| format!("--- {id}\n{}", g.stderr())).collect()
    }

    /// Every audit record of every replica, with its replica.
    fn audit(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        for (g, id) in self.gws.iter().zip(IDS) {
            for l in std::fs::read_to_string(g.dir.join("audit.jsonl")).unwrap_or_default().lines() {
                if let Ok(v) = serde_json::from_str(l) {
                    out.push((id, v));
                }
            }
        }
        out
    }
}

async fn incidents(gw: &Gateway) -> Value {
    let (status, v) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents", None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn chat(gw: &Gateway, key: &str, text: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn keys(role_extra: &str) -> String {
    format!(
        "[[keys]]\nid = \"alice-key\"\nsha256 = \"{}\"\ntenant = \"acme\"\nuser = \"alice\"\nrole = \"r\"\n\n\
         [[keys]]\nid = \"bob-key\"\nsha256 = \"{}\"\ntenant = \"acme\"\nuser = \"bob\"\nrole = \"r\"\n\n[roles.r]\n{role_extra}\n",
        sha256_hex(ALICE),
        sha256_hex(BOB)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_opens_once_fleet_wide_and_is_listed_the_same_everywhere() {
    let body = format!(
        r#"
[upstreams.s]
kind = "scripted"

[[upstreams.s.replies]]
when_contains = "leak"
text = "Sure, the marker is {CANARY} as requested."

[[upstreams.s.replies]]
text = "Hello there."

[[redaction.canaries]]
id = "support-prompt"
value = "{CANARY}"

[triggers.credential_leakage_confirmed]
auto = true
plan = "h4"

[triggers.system_prompt_exposure]
auto = false

[plans.h4]
actions = [{{action = "limit_user", user = "{{user}}", requests_per_minute = 1000, ttl = "1h"}}]

{keys}
"#,
        keys = keys("")
    );
    let f = tokio::task::block_in_place(|| Fleet::start(&body, &[]));
    let (a, b, c) = (&f.gws[0], &f.gws[1], &f.gws[2]);

    // The same trigger and principal fire on A, then on B: one incident, two firings.
    assert_eq!(chat(a, ALICE, "leak please").await.0, 200);
    assert_eq!(chat(b, ALICE, "leak again").await.0, 200, "the plan limits alice, it does not block her");

    let on_a = incidents(a).await;
    let on_b = incidents(b).await;
    let on_c = incidents(c).await;
    assert_eq!(on_a, on_b, "the same list from A and B");
    assert_eq!(on_a, on_c, "the same list from A and C");
    assert!(on_a.get("degraded").is_none(), "{on_a}");
    let list = on_a["incidents"].as_array().expect("incidents").clone();
    let leak: Vec<&Value> = list.iter().filter(|i| i["trigger"] == "credential_leakage_confirmed").collect();
    assert_eq!(leak.len(), 1, "one incident fleet-wide: {list:?}");
    let inc = leak[0];
    let id = inc["id"].as_str().expect("id").to_owned();
    assert!(id.len() >= 9 && id.starts_with("INC-") && id[4..].bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(inc["firings"], 2, "{inc}");
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["principal"]["user"], "alice");
    let replicas: Vec<&str> =
        inc["evidence"].as_array().expect("evidence").iter().filter_map(|e| e["replica"].as_str()).collect();
    assert_eq!(replicas, vec!["A", "B"], "{inc}");
    assert_eq!(inc["actions"].as_array().map(Vec::len), Some(1), "the plan ran once: {inc}");
    assert_eq!(inc["actions"][0]["plan"], "h4");

    // Once-only effects, from the replicas' own audit trails and the database.
    let audit = f.audit();
    let of = |event: &str| -> Vec<&'static str> {
        audit
            .iter()
            .filter(|(_, r)| r["kind"] == "incident" && r["event"] == event && r["incident"] == id.as_str())
            .map(|(id, _)| *id)
            .collect()
    };
    assert_eq!(of("opened"), vec!["A"], "opened on A only");
    assert_eq!(of("joined"), vec!["B"], "joined on B");
    let plans: Vec<&'static str> =
        audit.iter().filter(|(_, r)| r["kind"] == "switch" && r["plan"] == "h4").map(|(id, _)| *id).collect();
    assert_eq!(plans, vec!["A"], "the plan's switch batch ran on the opening replica only");
    // (Needs H2's fleet switch batches: the plan is one batch by `firebreak` in the database.)
    assert_eq!(f.sql_i64("SELECT count(*) FROM switch_batches WHERE actor = 'firebreak'"), 1, "{}", f.logs());
    assert_eq!(f.sql_i64("SELECT count(*) FROM incidents WHERE trigger = 'credential_leakage_confirmed'"), 1);

    // One incident from any replica; resolved through C, resolved everywhere.
    let (status, one) = b.admin(reqwest::Method::GET, &format!("/admin/v1/incidents/{id}"), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(&one["incident"], inc);
    let (status, v) =
        c.admin(reqwest::Method::POST, &format!("/admin/v1/incidents/{id}/checklist"), Some(json!({"step": 0}))).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = c
        .admin(reqwest::Method::POST, &format!("/admin/v1/incidents/{id}/resolve"), Some(json!({"note": "done"})))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, again) = a.admin(reqwest::Method::GET, &format!("/admin/v1/incidents/{id}"), None).await;
    assert_eq!(again["incident"]["status"], "resolved", "{again}");
    assert_eq!(again["incident"]["ticked"][0]["step"], 0, "{again}");
    assert_eq!(again["incident"]["notes"][0]["text"], "done", "{again}");

    // A new firing after the resolution opens a new incident (the open slot was freed).
    assert_eq!(chat(c, ALICE, "leak once more").await.0, 200);
    let open = a.admin(reqwest::Method::GET, "/admin/v1/incidents?status=open", None).await.1;
    let reopened: Vec<&Value> = open["incidents"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| i["trigger"] == "credential_leakage_confirmed")
        .collect();
    assert_eq!(reopened.len(), 1, "{open}");
    assert_ne!(reopened[0]["id"], id.as_str());
    // Nothing secret in the book.
    let docs = f.sql("SELECT doc::text FROM incidents");
    assert!(docs.iter().all(|r| !r.get::<_, String>(0).contains(CANARY)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_session_initialized_through_a_works_through_b_for_its_key_only() {
    let srv = McpServer::start().await;
    let body = format!(
        "[incidents]\nauto_contain = false\n\n[mcp]\nallowed_origins = [\"http://localhost:6274\"]\n\n{}\n[mcp_servers.srv]\nurl = \"{}\"\n",
        keys("mcp = [\"srv/*\"]"),
        srv.url()
    );
    let f = tokio::task::block_in_place(|| Fleet::start(&body, &[]));
    let (a, b, c) = (&f.gws[0], &f.gws[1], &f.gws[2]);
    let mut on_a = McpClient::new(&a.url("/mcp/srv"), Some(ALICE));
    on_a.initialize(PROTOCOL_VERSION).await;
    let sid = on_a.session.clone().expect("a session id from the server");

    // Only the digest is stored.
    let rows = f.sql("SELECT binding, key_id, created_by FROM mcp_sessions");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), sha256_hex(&format!("srv\n{sid}")));
    assert_eq!(rows[0].get::<_, String>(1), "alice-key");
    assert_eq!(rows[0].get::<_, String>(2), "A");

    // The same key through B: served.
    let mut on_b = McpClient::new(&b.url("/mcp/srv"), Some(ALICE));
    on_b.session = Some(sid.clone());
    on_b.version = Some(PROTOCOL_VERSION.into());
    let got = on_b.rpc(1, "tools/list", json!({})).await;
    assert!(got["result"]["tools"].is_array(), "{got}");

    // Another key through C: refused, and the server never sees it.
    let before = srv.count();
    let mut on_c = McpClient::new(&c.url("/mcp/srv"), Some(BOB));
    on_c.session = Some(sid.clone());
    on_c.version = Some(PROTOCOL_VERSION.into());
    let g = on_c.post(&upstream::mcp::request(2, "tools/list", json!({}))).await;
    assert_eq!(g.status, 403, "session mismatch: {}", g.text);
    assert!(g.text.contains("session"), "{}", g.text);
    assert_eq!(srv.count(), before, "the refused call did not reach the server");

    // Ended through B: unknown everywhere (A had it cached: the notification drops it).
    let r = on_b.request(reqwest::Method::DELETE).send().await.expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(f.sql_i64("SELECT count(*) FROM mcp_sessions"), 0);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let g = on_a.post(&upstream::mcp::request(3, "tools/list", json!({}))).await;
        if g.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "A still serves an ended session: {} {}", g.status, g.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!f.logs().contains(&sid), "the session id is never logged");
}

fn write_key(path: &Path, v: &str) {
    std::fs::write(path, format!("{v}\n")).expect("key file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_all_and_reload_all_reach_every_replica() {
    let up = FakeUpstream::start().await;
    up.set_default(Reply::json(&chat_json("fresh", "m")));
    let shared = tempfile::tempdir().expect("tempdir");
    let key_file = shared.path().join("openai.key");
    write_key(&key_file, "sk-OLD-fleet-0001");
    let body = format!(
        "[upstreams.oai]\nkind = \"openai\"\nbase_url = \"{}\"\ncredential_file = \"{}\"\n\n{}",
        up.base_url(),
        key_file.display(),
        keys("")
    );
    let f = tokio::task::block_in_place(|| Fleet::start(&body, &[]));
    for g in &f.gws {
        assert_eq!(chat(g, ALICE, "hi").await.0, 200);
        assert_eq!(up.last().header("authorization").as_deref(), Some("Bearer sk-OLD-fleet-0001"));
    }

    write_key(&key_file, "sk-NEW-fleet-0002");
    let (status, v) = f.gws[0]
        .admin(reqwest::Method::POST, "/admin/v1/rotate/credentials", Some(json!({"reason": "INC-9: mass compromise"})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rotated"], json!(["oai"]), "{v}");
    assert!(v["fleet"]["command"].is_i64(), "{v}");
    assert_eq!(v["fleet"]["laggards"], json!([]), "{v}");
    for id in IDS {
        assert_eq!(v["fleet"]["results"][id]["ok"], true, "{id}: {v}");
        assert_eq!(v["fleet"]["results"][id]["rotated"], json!(["oai"]), "{id}: {v}");
    }
    for (g, id) in f.gws.iter().zip(IDS) {
        assert_eq!(chat(g, ALICE, "hi").await.0, 200);
        assert_eq!(up.last().header("authorization").as_deref(), Some("Bearer sk-NEW-fleet-0002"), "through {id}");
    }
    let audit = f.audit();
    for id in ["B", "C"] {
        assert!(
            audit
                .iter()
                .any(|(r, rec)| *r == id && rec["kind"] == "rotation" && rec["fleet_command"] == v["fleet"]["command"]),
            "{id} audited the rotation with the command id"
        );
    }
    assert!(!f.logs().contains("sk-NEW-fleet-0002") && !audit.iter().any(|(_, r)| r.to_string().contains("sk-NEW")));

    // `admin reload --all`: every replica reloads its own file and reports its policy hash.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["admin", "--url", &f.gws[1].admin, "reload", "--all"])
        .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("cli");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for id in IDS {
        assert!(text.contains(&format!("\"{id}\"")), "{id} in {text}");
    }
    let hashes = f.sql("SELECT detail->>'policy_hash', detail::text FROM fleet_command_results r JOIN fleet_commands c ON c.id = r.command_id WHERE c.kind = 'reload'");
    let details: Vec<String> = hashes.iter().map(|r| r.get(1)).collect();
    assert_eq!(hashes.len(), 3, "three results");
    let first: Option<String> = hashes[0].get(0);
    assert!(first.as_deref().is_some_and(|h| h.len() == 64), "{first:?}");
    assert!(hashes.iter().all(|r| r.get::<_, Option<String>>(0) == first), "one policy everywhere: {details:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_recorded_while_postgres_is_down_are_merged_on_reconnect() {
    let body = format!(
        r#"
[upstreams.s]
kind = "scripted"

[[upstreams.s.replies]]
when_contains = "leak"
text = "Sure, the marker is {CANARY} as requested."

[[upstreams.s.replies]]
text = "Hello there."

[[redaction.canaries]]
id = "support-prompt"
value = "{CANARY}"

[triggers.credential_leakage_confirmed]
auto = false

[triggers.system_prompt_exposure]
auto = false

{keys}
"#,
        keys = keys("")
    );
    let f = tokio::task::block_in_place(|| Fleet::start_gated(&body));
    let gate = f.gate.as_ref().expect("gated");
    let (a, b) = (&f.gws[0], &f.gws[1]);
    gate.cut();
    assert_eq!(chat(a, ALICE, "leak while down").await.0, 200);
    let v = incidents(a).await;
    assert_eq!(v["degraded"], "showing this replica's local incidents: PostgreSQL is unreachable", "{v}");
    let local: Vec<Value> = v["incidents"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|i| i["trigger"] == "credential_leakage_confirmed")
        .cloned()
        .collect();
    assert_eq!(local.len(), 1, "{v}");
    let local_id = local[0]["id"].as_str().expect("id").to_owned();
    assert!(local_id.starts_with("INC-A-L"), "{local_id}");
    assert_eq!(local[0]["local"], true);

    gate.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    let merged = loop {
        let v = incidents(b).await;
        let hit =
            v["incidents"].as_array().into_iter().flatten().find(|i| i["merged_from"] == local_id.as_str()).cloned();
        if let Some(m) = hit {
            break m;
        }
        assert!(Instant::now() < deadline, "not merged within 15 s: {v}\n{}", f.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(merged["id"].as_str().is_some_and(|id| !id.contains("-L")), "{merged}");
    assert_eq!(merged["firings"], 1);
    assert_eq!(merged["evidence"][0]["replica"], "A", "{merged}");
    assert!(merged.get("local").is_none(), "{merged}");
    // Dropped from A's file, and A's list is the fleet's again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = incidents(a).await;
        let any_local = v["incidents"].as_array().into_iter().flatten().any(|i| i["local"] == true);
        if v.get("degraded").is_none() && !any_local {
            break;
        }
        assert!(Instant::now() < deadline, "A still shows local incidents: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file = std::fs::read_to_string(a.dir.join("state.incidents.json")).unwrap_or_default();
    assert!(!file.contains(&local_id), "the merged incident left A's file: {file}");
}
