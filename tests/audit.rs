//! The audit trail: a real gateway writes it; `firebreak audit verify` accepts it as written and
//! names the first bad line for every kind of tampering. No secret is ever written to it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{sha256_hex, Gateway, ADMIN_TOKEN};
use serde_json::{json, Map, Value};

const ALICE: &str = "sk-fb-audit-alice-3f9c0d1e";
const BOB: &str = "sk-fb-audit-bob-8b2e4a77";
const STRAY: &str = "sk-fb-not-a-key-6d5c4b3a";

fn policy() -> String {
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

[[keys]]
id = "bob-key"
sha256 = "{bob}"
tenant = "globex"
user = "bob"
role = "developer"

[roles.developer]
"#,
        alice = sha256_hex(ALICE),
        bob = sha256_hex(BOB),
    )
}

async fn chat(g: &Gateway, key: &str, stream: bool) -> u16 {
    let resp = reqwest::Client::new()
        .post(g.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

/// Runs a gateway through requests and switch changes, stops it, and returns its files.
async fn produce_trail() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy()).expect("policy");
    let mut g = Gateway::spawn(tmp.path());
    assert_eq!(chat(&g, ALICE, false).await, 200);
    assert_eq!(chat(&g, BOB, true).await, 200);
    assert_eq!(chat(&g, STRAY, false).await, 401);
    // A wrong admin token is refused and must not be logged either.
    let r = reqwest::Client::new()
        .get(format!("{}/admin/v1/state", g.admin))
        .bearer_auth("sk-wrong-admin-token-5a5a5a")
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 401);
    for (i, actions) in [
        json!([{"action": "block_user", "user": "bob", "ttl": "1h"}]),
        json!([{"action": "set_level", "level": "elevated"}, {"action": "revoke_key", "key_id": "bob-key"}]),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) =
            g.switches(json!({"actions": actions, "reason": format!("step {i}"), "actor": "auditor"})).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(chat(&g, BOB, false).await, 401);
    assert_eq!(chat(&g, ALICE, true).await, 200);
    // The last change is written durably (fsynced, head updated) before it is acknowledged, and the
    // writer keeps order: once it returns, every earlier record is on disk too.
    let (status, body) = g
        .switches(
            json!({"actions": [{"action": "set_level", "level": "normal"}], "reason": "all clear", "actor": "auditor"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    g.kill();
    let stderr = g.stderr();
    let file = tmp.path().join("audit.jsonl");
    (tmp, file, stderr)
}

/// Verifies with the key the gateway generated beside the original trail (`audit.jsonl.key`).
fn verify(file: &Path) -> (i32, String) {
    let key = file.parent().expect("dir").join("audit.jsonl.key");
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["audit", "verify"])
        .arg(file)
        .arg("--key-file")
        .arg(key)
        .output()
        .expect("run firebreak audit verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file).expect("audit file").lines().map(str::to_owned).collect()
}

/// Writes a tampered copy of the trail (with a copy of the original head file) and verifies it.
fn verify_tampered(dir: &Path, name: &str, original: &Path, content: &str) -> (i32, String) {
    let file = dir.join(format!("{name}.jsonl"));
    std::fs::write(&file, content).expect("write tampered trail");
    let mut head = file.as_os_str().to_owned();
    head.push(".head");
    let mut orig_head = original.as_os_str().to_owned();
    orig_head.push(".head");
    std::fs::copy(&orig_head, &head).expect("copy the head file");
    verify(&file)
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// What someone without the key can compute in place of a MAC.
fn record_hash(m: &Map<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_string(m).expect("json").as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_the_trail_and_finds_every_tampering() {
    let (tmp, file, _stderr) = produce_trail().await;
    let (code, out) = verify(&file);
    assert_eq!(code, 0, "an untouched trail verifies: {out}");
    assert!(out.contains("head authenticated"), "the head file was checked: {out}");
    let orig = lines(&file);
    let n = orig.len();
    assert!(n >= 8, "requests and switch changes were audited ({n} records)");
    let records: Vec<Value> = orig.iter().map(|l| serde_json::from_str(l).expect("JSON record")).collect();
    assert!(
        records.iter().any(|r| r["kind"] == "switch" && r["actor"] == "admin" && r["on_behalf_of"] == "auditor"),
        "switch records: the actor is the authenticated identity (the legacy token's `admin`), the client's name is on_behalf_of"
    );
    assert!(records.iter().any(|r| r["kind"] == "request"), "request records");
    let switch = records.iter().find(|r| r["kind"] == "switch").expect("switch record");
    for field in ["reason", "before_version", "after_version", "actions"] {
        assert!(switch.get(field).is_some(), "switch record has {field}: {switch}");
    }
    let dir = tmp.path();
    let mid = n / 2; // 0-based index of a middle record; its line is mid + 1
    let bad_at = |out: &str, line: usize| out.contains(&format!("TAMPERED: line {line}:"));

    // 1. One field of a middle record edited (valid JSON, same shape).
    let mut edited = orig.clone();
    let mut rec: Map<String, Value> = serde_json::from_str(&edited[mid]).expect("record");
    let field = if rec.contains_key("user") { "user" } else { "kind" };
    rec.insert(field.into(), Value::from("mallory"));
    edited[mid] = serde_json::to_string(&rec).expect("json");
    let (code, out) = verify_tampered(dir, "edited", &file, &join(&edited));
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, mid + 1), "edited record found at line {}: {out}", mid + 1);

    // 2. A middle record deleted.
    let mut deleted = orig.clone();
    deleted.remove(mid);
    let (code, out) = verify_tampered(dir, "deleted", &file, &join(&deleted));
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, mid + 1), "deletion found at line {}: {out}", mid + 1);

    // 3. Two records swapped.
    let mut swapped = orig.clone();
    swapped.swap(mid, mid + 1);
    let (code, out) = verify_tampered(dir, "swapped", &file, &join(&swapped));
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, mid + 1), "swap found at line {}: {out}", mid + 1);

    // 4. A forged record inserted: well-formed and chained to its predecessor, but its MAC made
    //    without the key. Its own line is found.
    let prev: Map<String, Value> = serde_json::from_str(&orig[mid - 1]).expect("record");
    let mut forged = Map::new();
    forged.insert("kind".into(), json!("switch"));
    forged.insert("actor".into(), json!("attacker"));
    forged.insert("reason".into(), json!("nothing to see"));
    forged.insert("seq".into(), json!(prev["seq"].as_u64().expect("seq") + 1));
    forged.insert("time".into(), prev["time"].clone());
    forged.insert("prev".into(), prev["mac"].clone());
    forged.insert("kid".into(), prev["kid"].clone());
    let h = record_hash(&forged);
    forged.insert("mac".into(), json!(h));
    let mut inserted = orig.clone();
    inserted.insert(mid, serde_json::to_string(&forged).expect("json"));
    let (code, out) = verify_tampered(dir, "inserted", &file, &join(&inserted));
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, mid + 1), "insertion found at line {}: {out}", mid + 1);
    //    A clumsy forgery (wrong hash) is found on its own line.
    let mut clumsy = orig.clone();
    clumsy.insert(mid, json!({"kind": "switch", "seq": 999, "prev": "00", "mac": "ff", "kid": "00"}).to_string());
    let (code, out) = verify_tampered(dir, "clumsy", &file, &join(&clumsy));
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, mid + 1), "{out}");

    // 5. The file truncated in the middle of a line.
    let full = join(&orig);
    let offset: usize = orig[..mid].iter().map(|l| l.len() + 1).sum::<usize>() + orig[mid].len() / 2;
    let (code, out) = verify_tampered(dir, "truncated", &file, &full[..offset]);
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, mid + 1), "truncation found at line {}: {out}", mid + 1);

    // 6. The last record(s) deleted at a line boundary: the chain is intact, the head file disagrees.
    for cut in [1, 2] {
        let kept = &orig[..n - cut];
        let (code, out) = verify_tampered(dir, &format!("tail{cut}"), &file, &join(kept));
        assert_eq!(code, 1, "removing the last {cut} record(s) is found: {out}");
        assert!(bad_at(&out, n - cut + 1), "first missing line {} named: {out}", n - cut + 1);
    }
    //    The last record replaced by a different one, chained but not MACed with the key.
    let before_last: Map<String, Value> = serde_json::from_str(&orig[n - 2]).expect("record");
    let last: Map<String, Value> = serde_json::from_str(&orig[n - 1]).expect("record");
    let mut replaced = last.clone();
    replaced.remove("mac");
    replaced.insert("reason".into(), json!("rewritten"));
    replaced.insert("prev".into(), before_last["mac"].clone());
    let h = record_hash(&replaced);
    replaced.insert("mac".into(), json!(h));
    let mut rewritten = orig.clone();
    rewritten[n - 1] = serde_json::to_string(&replaced).expect("json");
    let (code, out) = verify_tampered(dir, "rewritten", &file, &join(&rewritten));
    assert_eq!(code, 1, "{out}");
    assert!(bad_at(&out, n), "{out}");

    // The original is still intact (every tampering was on a copy).
    assert_eq!(verify(&file).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_admin_token_in_the_trail_or_the_log() {
    let (_tmp, file, stderr) = produce_trail().await;
    let trail = std::fs::read_to_string(&file).expect("audit file");
    assert!(!trail.is_empty());
    assert!(!stderr.is_empty(), "the gateway logged something");
    for secret in [ALICE, BOB, STRAY, ADMIN_TOKEN, "sk-wrong-admin-token-5a5a5a"] {
        assert!(!trail.contains(secret), "audit trail contains the secret {secret}");
        assert!(!stderr.contains(secret), "stderr log contains the secret {secret}");
    }
    // Keys appear by id only.
    assert!(trail.contains("alice-key"), "requests are attributed by key id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trail_continues_across_restart() {
    let g = Gateway::start(&policy());
    assert_eq!(chat(&g, ALICE, false).await, 200);
    let (status, _) = g.switches(json!({"actions": [{"action": "safe_mode", "enabled": true}], "reason": "one"})).await;
    assert_eq!(status, 200);
    let g = g.restart();
    let (status, _) =
        g.switches(json!({"actions": [{"action": "safe_mode", "enabled": false}], "reason": "two"})).await;
    assert_eq!(status, 200);
    let file = g.dir.join("audit.jsonl");
    let (code, out) = verify(&file);
    assert_eq!(code, 0, "the chain continues across a restart: {out}");
    let recs: Vec<Value> = lines(&file).iter().map(|l| serde_json::from_str(l).expect("json")).collect();
    let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seq has no gaps");
    assert!(recs.iter().any(|r| r["reason"] == "two"));
}
