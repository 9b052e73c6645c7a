//! Fleet-mode harness (design `docs/design/fleet-mode.md` §11.1): the shared PostgreSQL and Redis
//! on loopback, one fresh database and one Redis key prefix per test, TCP gates in front of both
//! services (an outage is a `cut()`, never a stopped service: other tests share them), and three
//! real `firebreak serve` processes "A", "B", "C" sharing one policy.
//!
//! The services are required: when they are unreachable, [`services`] panics with the command that
//! starts them (`bash tests/fleet-services.sh`). A fleet test never skips silently.
//!
//! Names: databases `fbt_<tag><pid>_<n>`, Redis prefixes `<tag>fbt-<pid>-<n>`, where `<tag>` is
//! `$FIREBREAK_TEST_TAG` followed by `_`/`-` when set (so parallel users of one server never meet).
#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Gateway;

/// The replicas' ids, in order.
pub const REPLICA_IDS: [&str; 3] = ["A", "B", "C"];
/// The variable every replica reads its PostgreSQL URL from (the policy names it).
pub const PG_ENV: &str = "FIREBREAK_POSTGRES_URL";
/// The variable every replica reads its Redis URL from.
pub const REDIS_ENV: &str = "FIREBREAK_REDIS_URL";

/// Where the shared services are.
#[derive(Debug, Clone)]
pub struct Services {
    /// A superuser URL to the maintenance database (`FIREBREAK_TEST_PG`, default
    /// `postgres://postgres@127.0.0.1:5432/postgres`).
    pub pg_admin_url: String,
    /// `FIREBREAK_TEST_REDIS`, default `redis://127.0.0.1:6379/`.
    pub redis_url: String,
    /// PostgreSQL's address.
    pub pg_addr: SocketAddr,
    /// Its user (and password, when the URL has one) for the test databases.
    pub pg_user: String,
    /// The password, if any.
    pub pg_password: Option<String>,
    /// Redis's address.
    pub redis_addr: SocketAddr,
}

impl Services {
    /// A URL to database `db` at `addr` (the real server or a gate in front of it).
    pub fn pg_url_at(&self, addr: SocketAddr, db: &str) -> String {
        let auth = match &self.pg_password {
            Some(p) => format!("{}:{}", self.pg_user, p),
            None => self.pg_user.clone(),
        };
        format!("postgres://{auth}@{addr}/{db}")
    }
}

static SERVICES: OnceLock<Result<Services, String>> = OnceLock::new();

/// The shared services, checked once per test binary (a real connection to each). Panics with the
/// way to start them when either is unreachable.
pub fn services() -> Services {
    let got = SERVICES.get_or_init(|| {
        let pg_admin_url = std::env::var("FIREBREAK_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let redis_url = std::env::var("FIREBREAK_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
        let cfg: tokio_postgres::Config =
            pg_admin_url.parse().map_err(|e| format!("FIREBREAK_TEST_PG is not a PostgreSQL URL: {e}"))?;
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let pg_addr = resolve(&host, port)?;
        let pg_user = cfg.get_user().unwrap_or("postgres").to_owned();
        let pg_password = cfg.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
        let redis_addr = redis_addr_of(&redis_url)?;
        let url = pg_admin_url.clone();
        block(async move {
            let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| "PostgreSQL did not answer within 5 s".to_owned())?
                .map_err(|e| format!("PostgreSQL: {e}"))?;
            tokio::spawn(conn);
            client.simple_query("SELECT 1").await.map_err(|e| format!("PostgreSQL: {e}"))?;
            Ok::<_, String>(())
        })?;
        let client = redis::Client::open(redis_url.as_str()).map_err(|e| format!("Redis URL: {e}"))?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| format!("Redis: {e}"))?;
        let pong: String = redis::cmd("PING").query(&mut con).map_err(|e| format!("Redis: {e}"))?;
        if pong != "PONG" {
            return Err(format!("Redis answered PING with {pong:?}"));
        }
        Ok(Services { pg_admin_url, redis_url, pg_addr, pg_user, pg_password, redis_addr })
    });
    match got {
        Ok(s) => s.clone(),
        Err(e) => panic!(
            "fleet tests need PostgreSQL and Redis on loopback: run `bash tests/fleet-services.sh` (CI does). \
             Not reachable: {e}"
        ),
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to nothing"))
}

/// `redis://[user:pass@]host[:port][/db]` → the address.
fn redis_addr_of(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("redis://").ok_or_else(|| format!("FIREBREAK_TEST_REDIS must be redis://…: {url}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let hostport = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad Redis port in {url}"))?),
        None => (hostport, 6379),
    };
    resolve(if host.is_empty() { "127.0.0.1" } else { host }, port)
}

/// Runs a future to completion on a fresh single-thread runtime in its own thread: usable from sync
/// code, `Drop`, and from inside a test's tokio runtime alike.
pub fn block<T: Send>(f: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
        })
        .join()
        .expect("block(): the future panicked")
    })
}

fn tag(sep: &str) -> String {
    match std::env::var("FIREBREAK_TEST_TAG") {
        Ok(t) if !t.is_empty() => format!("{}{sep}", t.to_ascii_lowercase()),
        _ => String::new(),
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A unique `(database name, redis prefix)` for this process.
pub fn unique_names() -> (String, String) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    (format!("fbt_{}{pid}_{n}", tag("_")), format!("{}fbt-{pid}-{n}", tag("-")))
}

/// Opens a client to `url` on the current runtime (its connection task spawned there).
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .unwrap_or_else(|_| panic!("PostgreSQL connect timed out (10 s)"))
            .unwrap_or_else(|e| panic!("PostgreSQL connect: {e}"));
    tokio::spawn(conn);
    client
}

/// A database of its own, dropped (with its connections) at the end.
pub struct TestDb {
    /// `fbt_<pid>_<n>`.
    pub name: String,
    /// A direct URL (not through a gate).
    pub url: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub fn create(name: &str) -> TestDb {
        let s = services();
        let admin = s.pg_admin_url.clone();
        let q = format!("CREATE DATABASE \"{name}\"");
        block(async move {
            let c = pg_connect(&admin).await;
            c.simple_query(&q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        });
        TestDb { name: name.to_owned(), url: s.pg_url_at(s.pg_addr, name) }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = services().pg_admin_url;
        let q = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        block(async move {
            if let Ok(Ok((c, conn))) =
                tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(&admin, tokio_postgres::NoTls))
                    .await
            {
                tokio::spawn(conn);
                if let Err(e) = c.simple_query(&q).await {
                    eprintln!("warning: {q}: {e}");
                }
            }
        });
    }
}

/// Deletes every Redis key under `<prefix>:`.
pub fn redis_delete_prefix(prefix: &str) {
    let s = services();
    let Ok(client) = redis::Client::open(s.redis_url.as_str()) else { return };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(5)) else { return };
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    loop {
        let r: redis::RedisResult<(u64, Vec<String>)> =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500).query(&mut con);
        let Ok((next, keys)) = r else { return };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut con);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

// ---------------------------------------------------------------------------------------------
// TcpGate
// ---------------------------------------------------------------------------------------------

struct GateInner {
    target: SocketAddr,
    cut: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A TCP relay on `127.0.0.1:<port>` → `target`, run by std threads. [`TcpGate::cut`] closes every
/// relayed connection and refuses new ones (accepted and closed at once: the client sees the
/// connection end, as when a service goes away); [`TcpGate::restore`] relays again.
pub struct TcpGate {
    /// The port clients connect to.
    pub port: u16,
    inner: Arc<GateInner>,
}

impl TcpGate {
    /// Starts relaying to `target`.
    pub fn new(target: SocketAddr) -> TcpGate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("gate listener");
        let port = listener.local_addr().expect("gate addr").port();
        let inner = Arc::new(GateInner {
            target,
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let gate = inner.clone();
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if gate.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = incoming else { continue };
                if gate.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&gate.target, Duration::from_secs(2)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut conns = gate.conns.lock().expect("gate lock");
                    // Forget the connections that ended (their relay threads closed them).
                    conns.retain(|c| c.peer_addr().is_ok());
                    for s in [&client, &server] {
                        if let Ok(c) = s.try_clone() {
                            conns.push(c);
                        }
                    }
                    // A cut may have happened between the check above and the registration.
                    if gate.cut.load(Ordering::SeqCst) {
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                        continue;
                    }
                }
                relay(&client, &server);
                relay(&server, &client);
            }
        });
        TcpGate { port, inner }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Closes every relayed connection and refuses new ones until [`TcpGate::restore`].
    pub fn cut(&self) {
        self.inner.cut.store(true, Ordering::SeqCst);
        let mut conns = self.inner.conns.lock().expect("gate lock");
        for c in conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.inner.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the gate is cut.
    pub fn is_cut(&self) -> bool {
        self.inner.cut.load(Ordering::SeqCst)
    }
}

fn relay(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else { return };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------------------------

/// How to start a fleet: [`Fleet::start`] and [`Fleet::start_with_env`] cover the usual cases.
#[derive(Default, Clone)]
pub struct Launch {
    /// One policy body per replica (without `[fleet]`); one entry: the same for all.
    pub policies: Vec<String>,
    /// Extra environment per replica (failpoints…), by index; missing entries: none.
    pub env: Vec<Vec<(String, String)>>,
    /// Extra `key = value` lines for the `[fleet]` section (e.g. `audit_queue_bytes = "4KiB"`).
    pub fleet_extra: String,
    /// Replicas to start (default 3).
    pub replicas: usize,
    /// Skip waiting for `GET /admin/v1/fleet` to list every replica live.
    pub no_wait_live: bool,
}

/// Three (by default) replicas on one fresh database and one Redis prefix, behind gates.
pub struct Fleet {
    /// Their database.
    pub db: TestDb,
    /// Their Redis prefix.
    pub prefix: String,
    /// The gate in front of PostgreSQL (every replica connects through it).
    pub pg_gate: TcpGate,
    /// The gate in front of Redis.
    pub redis_gate: TcpGate,
    /// "A", "B", "C".
    pub replicas: Vec<Gateway>,
    /// The replicas' ids, by index.
    pub ids: Vec<String>,
    envs: Vec<Vec<(String, String)>>,
    _root: tempfile::TempDir,
}

/// The `[fleet]` section the harness appends (design §11.1), with a generous `redis_timeout`: on a
/// busy 2-core CI machine the first Redis call, which also connects, can exceed the default 50 ms
/// and count locally.
pub fn fleet_section(prefix: &str, extra: &str) -> String {
    format!(
        "\n[fleet]\npostgres_url_env = \"{PG_ENV}\"\nredis_url_env = \"{REDIS_ENV}\"\nredis_prefix = \"{prefix}\"\n\
         poll_interval = \"500ms\"\nheartbeat_interval = \"250ms\"\nlive_after = \"2s\"\n\
         redis_timeout = \"500ms\"\n{extra}\n"
    )
}

impl Fleet {
    /// Starts "A", "B", "C" on `policy_body` (+ the `[fleet]` section) and waits until
    /// `GET /admin/v1/fleet` lists all three live.
    pub fn start(policy_body: &str) -> Fleet {
        Fleet::launch(Launch { policies: vec![policy_body.to_owned()], ..Launch::default() })
    }

    /// Like [`Fleet::start`], with extra environment variables per replica (failpoints), by index.
    pub fn start_with_env(policy_body: &str, per_replica_env: &[&[(&str, &str)]]) -> Fleet {
        Fleet::launch(Launch {
            policies: vec![policy_body.to_owned()],
            env: per_replica_env
                .iter()
                .map(|e| e.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
                .collect(),
            ..Launch::default()
        })
    }

    /// The general form.
    pub fn launch(opts: Launch) -> Fleet {
        let s = services();
        let (db_name, prefix) = unique_names();
        let db = TestDb::create(&db_name);
        let pg_gate = TcpGate::new(s.pg_addr);
        let redis_gate = TcpGate::new(s.redis_addr);
        let root = tempfile::tempdir().expect("tempdir");
        let n = if opts.replicas == 0 { 3 } else { opts.replicas };
        assert!(n <= REPLICA_IDS.len(), "at most {} replicas", REPLICA_IDS.len());
        assert!(!opts.policies.is_empty(), "a policy body");
        let section = fleet_section(&prefix, &opts.fleet_extra);
        let pg_url = s.pg_url_at(pg_gate.addr(), &db.name);
        let redis_url = format!("redis://{}/", redis_gate.addr());
        let mut envs = Vec::new();
        let mut dirs = Vec::new();
        for (i, id) in REPLICA_IDS.iter().take(n).enumerate() {
            let dir = root.path().join(id);
            std::fs::create_dir_all(&dir).expect("replica dir");
            let body = opts.policies.get(i).unwrap_or(&opts.policies[0]);
            std::fs::write(dir.join("policy.toml"), format!("{body}\n{section}")).expect("write policy");
            let mut env = vec![
                ("FIREBREAK_REPLICA_ID".to_owned(), (*id).to_owned()),
                (PG_ENV.to_owned(), pg_url.clone()),
                (REDIS_ENV.to_owned(), redis_url.clone()),
            ];
            env.extend(opts.env.get(i).cloned().unwrap_or_default());
            envs.push(env);
            dirs.push(dir);
        }
        // All at once, as a rolling deployment's first start does (migrations race: they must not fail).
        let started: Vec<Result<Gateway, String>> = std::thread::scope(|sc| {
            let handles: Vec<_> = dirs
                .iter()
                .zip(&envs)
                .map(|(dir, env)| sc.spawn(move || Gateway::try_spawn_with_env(dir, &borrow(env))))
                .collect();
            handles.into_iter().map(|h| h.join().expect("spawn thread")).collect()
        });
        let mut replicas = Vec::new();
        for (i, r) in started.into_iter().enumerate() {
            match r {
                Ok(g) => replicas.push(g),
                Err(msg) => panic!("fleet replica {} failed to start:\n{msg}", REPLICA_IDS[i]),
            }
        }
        let fleet = Fleet {
            db,
            prefix,
            pg_gate,
            redis_gate,
            replicas,
            ids: REPLICA_IDS.iter().take(n).map(|s| (*s).to_owned()).collect(),
            envs,
            _root: root,
        };
        if !opts.no_wait_live {
            fleet.wait_live(n, Duration::from_secs(20));
        }
        fleet
    }

    /// Replica `i`.
    pub fn r(&self, i: usize) -> &Gateway {
        &self.replicas[i]
    }

    /// Replica `i`'s environment (its id, the service URLs through the gates, failpoints).
    pub fn env_of(&self, i: usize) -> Vec<(&str, &str)> {
        borrow(&self.envs[i])
    }

    /// A direct PostgreSQL URL to the test database (not through the gate).
    pub fn pg_url(&self) -> String {
        self.db.url.clone()
    }

    /// Waits (bounded) until `GET /admin/v1/fleet` on replica A lists `n` live replicas; panics with
    /// the last answer and the replicas' logs otherwise.
    pub fn wait_live(&self, n: usize, within: Duration) {
        let admin = self.replicas[0].admin.clone();
        let deadline = Instant::now() + within;
        loop {
            let got = block(get_json(&admin, "/admin/v1/fleet"));
            if let Ok((200, v)) = &got {
                let rows = v["replicas"].as_array().cloned().unwrap_or_default();
                let live = rows.iter().filter(|r| r["live"] == Value::Bool(true)).count();
                if live >= n {
                    // Each replica's live count (the Redis fallback divides by it) comes from its own
                    // heartbeat: wait for one more beat from every replica after all were live.
                    let beats = |rows: &[Value]| -> Vec<Option<std::time::SystemTime>> {
                        rows.iter()
                            .map(|r| r["last_heartbeat"].as_str().and_then(|t| humantime::parse_rfc3339_weak(t).ok()))
                            .collect()
                    };
                    let Some(all_live_at) = beats(&rows).into_iter().flatten().max() else { return };
                    loop {
                        if let Ok((200, v)) = block(get_json(&admin, "/admin/v1/fleet")) {
                            let rows = v["replicas"].as_array().cloned().unwrap_or_default();
                            let b = beats(&rows);
                            if b.len() >= n && b.iter().all(|t| t.is_some_and(|t| t > all_live_at)) {
                                return;
                            }
                        }
                        if Instant::now() > deadline {
                            panic!("the replicas did not heartbeat again within {within:?}\n{}", self.logs());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            // No such route: fleet mode is not built (no point waiting).
            if Instant::now() > deadline || matches!(&got, Ok((404, _))) {
                let last = format!("{got:?}");
                panic!(
                    "GET /admin/v1/fleet on A did not list {n} live replicas within {within:?} \
                     (fleet mode: heartbeat + the admin fleet route, design §6). Last answer: {last}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tail of every replica's stderr, for failure messages (without the per-request lines).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (g, id) in self.replicas.iter().zip(&self.ids) {
            let log = g.stderr();
            let tail: Vec<&str> =
                log.lines().rev().filter(|l| !l.contains("}: request elapsed_us=")).take(25).collect();
            out.push_str(&format!("--- replica {id} stderr (last 25 lines but requests) ---\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Every replica's switch version (`GET /admin/v1/state`), `None` where unreadable.
    pub async fn versions(&self) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for g in &self.replicas {
            let (status, v) = g.admin(reqwest::Method::GET, "/admin/v1/state", None).await;
            out.push(if status == 200 { v["version"].as_u64() } else { None });
        }
        out
    }

    /// Waits (bounded) until every replica's `GET /admin/v1/state` is at version `v` or later.
    pub async fn wait_version(&self, v: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.versions().await;
            if got.iter().all(|x| x.is_some_and(|x| x >= v)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "not every replica reached switch version {v} within {within:?} (A, B, C: {got:?}): \
                     the fleet's LISTEN/poll sync (design §5.3) did not install it\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `q` against the test database directly (not through the gate).
    pub async fn sql(&self, q: &str) -> Vec<tokio_postgres::Row> {
        let c = pg_connect(&self.db.url).await;
        c.query(q, &[]).await.unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    /// The first column of the first row of `q` as an i64 (a count).
    pub async fn sql_i64(&self, q: &str) -> i64 {
        let rows = self.sql(q).await;
        let row = rows.first().unwrap_or_else(|| panic!("{q}: no row"));
        row.try_get::<_, i64>(0).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    /// Kills replica `i` (SIGKILL) and starts it again on the same directory and environment.
    pub fn restart(&mut self, i: usize) {
        self.restart_with_env(i, &[]);
    }

    /// Like [`Fleet::restart`], replacing the replica's extra environment (failpoints) with `env`.
    pub fn restart_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        self.replicas[i].kill();
        self.envs[i].truncate(3);
        self.envs[i].extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let dir = self.replicas[i].dir.clone();
        let g = Gateway::try_spawn_with_env(&dir, &borrow(&self.envs[i]))
            .unwrap_or_else(|msg| panic!("replica {} failed to restart:\n{msg}", self.ids[i]));
        self.replicas[i] = g;
    }

    /// Runs `firebreak ARGS…` against replica `i`'s admin API, with its environment (service URLs).
    pub fn cli(&self, i: usize, args: &[&str]) -> std::process::Output {
        self.replicas[i].cli_with_env(args, &self.env_of(i))
    }

    /// Replica `i`'s policy file.
    pub fn policy_path(&self, i: usize) -> PathBuf {
        self.replicas[i].dir.join("policy.toml")
    }

    /// Replica `i`'s directory.
    pub fn dir(&self, i: usize) -> &Path {
        &self.replicas[i].dir
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for g in &mut self.replicas {
            g.kill();
        }
        redis_delete_prefix(&self.prefix);
        // `db` drops next: DROP DATABASE … WITH (FORCE).
    }
}

fn borrow(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `GET {admin}{path}` with the admin token: (status, JSON or the text as a string).
pub async fn get_json(admin: &str, path: &str) -> Result<(u16, Value), String> {
    let resp = reqwest::Client::new()
        .get(format!("{admin}{path}"))
        .bearer_auth(super::ADMIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// `GET {proxy or admin}/readyz[?query]`: (status, body text).
pub async fn readyz(base: &str, query: &str) -> (u16, String) {
    let url = if query.is_empty() { format!("{base}/readyz") } else { format!("{base}/readyz?{query}") };
    match reqwest::Client::new().get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `f` (bounded) until it returns `Some`; panics with `what` and the last value otherwise.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("{what} (not within {within:?}); last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
