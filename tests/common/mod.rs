//! Shared harness for integration tests: starts the real `firebreak` binary on ephemeral loopback
//! ports with a policy written to a temp dir, and talks to it over HTTP.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod fleet;

/// The admin token every test gateway uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running gateway process.
pub struct Gateway {
    child: Option<Child>,
    /// AI traffic base URL, e.g. `http://127.0.0.1:41234`.
    pub proxy: String,
    /// Admin base URL.
    pub admin: String,
    /// Temp dir holding policy, state and audit files (kept across restarts).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Writes `policy` to a fresh temp dir and starts the gateway on it.
    pub fn start(policy: &str) -> Gateway {
        Gateway::start_with_env(policy, &[])
    }

    /// Like [`start`], with extra environment variables for the gateway process.
    pub fn start_with_env(policy: &str, env: &[(&str, &str)]) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("policy.toml"), policy).expect("write policy");
        let mut g = Gateway::try_spawn_with_env(tmp.path(), env).unwrap_or_else(|msg| panic!("{msg}"));
        g._tmp = Some(tmp);
        g
    }

    /// Like [`start`], with extra files (credentials, prompt texts) written beside the policy.
    pub fn start_with_files(policy: &str, files: &[(&str, &str)]) -> Gateway {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(tmp.path().join(name), text).expect("write file");
        }
        std::fs::write(tmp.path().join("policy.toml"), policy).expect("write policy");
        let mut g = Gateway::spawn(tmp.path());
        g._tmp = Some(tmp);
        g
    }

    /// Starts a gateway on the policy, state and audit files already in `dir`.
    pub fn spawn(dir: &Path) -> Gateway {
        match Gateway::try_spawn(dir) {
            Ok(g) => g,
            Err(msg) => panic!("{msg}"),
        }
    }

    /// Like [`spawn`], with extra environment variables for the gateway process.
    pub fn spawn_with_env(dir: &Path, env: &[(&str, &str)]) -> Gateway {
        Gateway::try_spawn_with_env(dir, env).unwrap_or_else(|msg| panic!("{msg}"))
    }

    /// Like [`spawn`], but returns the gateway's stderr when it fails to start.
    pub fn try_spawn(dir: &Path) -> Result<Gateway, String> {
        Gateway::try_spawn_with_env(dir, &[])
    }

    /// Starts a gateway in `dir` with extra environment variables.
    pub fn try_spawn_with_env(dir: &Path, env: &[(&str, &str)]) -> Result<Gateway, String> {
        Gateway::try_spawn_wrapped(dir, env, &[])
    }

    /// Like [`try_spawn_with_env`], with the gateway started through `wrapper` (a program and its
    /// arguments, to which the gateway's command line is appended; it must `exec` it, so that the
    /// child's pid is the gateway's), e.g. a shell that sets a resource limit first.
    pub fn try_spawn_wrapped(dir: &Path, env: &[(&str, &str)], wrapper: &[&str]) -> Result<Gateway, String> {
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log");
        let bin = env!("CARGO_BIN_EXE_firebreak");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = cmd
            .arg("serve")
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--state-file")
            .arg(dir.join("state.json"))
            .arg("--audit-file")
            .arg(dir.join("audit.jsonl"))
            .arg("--ready-file")
            .arg(&ready)
            .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("FIREBREAK_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn firebreak");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    return Ok(Gateway {
                        child: Some(child),
                        proxy: format!("http://{}", v["proxy"].as_str().unwrap_or_default()),
                        admin: format!("http://{}", v["admin"].as_str().unwrap_or_default()),
                        dir: dir.to_path_buf(),
                        _tmp: None,
                    });
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(format!("firebreak exited with {status} before it was ready:\n{log}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(format!("firebreak not ready after 30 s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The gateway process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway is running").id()
    }

    /// Stops the process (SIGKILL: a crash, the hardest case for durability).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (a graceful stop, as a service manager does); returns at once.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("the gateway is running").id();
        let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM {pid} failed");
    }

    /// Waits (bounded) for the process to exit; its status, or `None` when it still runs at the
    /// deadline.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills and starts again on the same files; keeps the temp dir alive.
    pub fn restart(mut self) -> Gateway {
        self.kill();
        let tmp = self._tmp.take();
        let mut g = Gateway::spawn(&self.dir);
        g._tmp = tmp;
        g
    }

    /// The gateway's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// `{proxy}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.proxy, path)
    }

    /// An admin request with the token; returns status and JSON body.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut rb = client.request(method, format!("{}{}", self.admin, path)).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Runs `firebreak ARGS…` against this gateway's admin API: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .args(args)
            .env("FIREBREAK_ADMIN_URL", &self.admin)
            .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("run firebreak");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// Runs `firebreak ARGS…` against this gateway's admin API with extra environment variables;
    /// the whole output, exit code included.
    pub fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .args(args)
            .env("FIREBREAK_ADMIN_URL", &self.admin)
            .env("FIREBREAK_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .output()
            .expect("run firebreak")
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let resp = reqwest::Client::new()
            .get(format!("{}/metrics", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET /metrics");
        resp.text().await.unwrap_or_default()
    }

    /// The value of one sample in `/metrics`, by its full name with labels as rendered (e.g.
    /// `firebreak_fleet_redis_fallback_total{what="ratelimit"}`); `None` when absent.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Posts a batch of switch actions.
    pub async fn switches(&self, batch: Value) -> (u16, Value) {
        self.admin(reqwest::Method::POST, "/admin/v1/switches", Some(batch)).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SHA-256 hex of a key, for policies written in tests.
pub fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}
