//! Forensics end to end: who sent each request (client address, a trusted proxy's forwarded
//! address, user agent) in the audit records of the AI and MCP paths; evidence captured around an
//! incident, redacted and bounded; the forensic bundle exported and verified offline, and a
//! tampered one caught with the part named.

mod common;
mod upstream;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{sha256_hex, Gateway};
use serde_json::{json, Value};

const ALICE: &str = "fbk-forensics-alice-4b1c";
const BOB: &str = "fbk-forensics-bob-9e2d";
const CANARY: &str = "fbQ7kX2mZp9RtL4w";
/// A credential a client pastes into its prompts: it must never reach the evidence store.
const AWS_KEY: &str = "AKIAZ7QH3K2M9XW4LR5T";

fn policy(extra: &str) -> String {
    policy_with("", extra)
}

/// The policy with `role_extra` added to role `r` (its MCP servers).
fn policy_with(role_extra: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.s]
kind = "scripted"
chunk_chars = 5
chunk_delay_ms = 0

[[upstreams.s.replies]]
when_contains = "leak-plain"
text = "Sure, the marker is {CANARY} as requested."

[[upstreams.s.replies]]
text = "Hello there."

[[keys]]
id = "alice-key"
sha256 = "{alice}"
tenant = "acme"
user = "alice"
role = "r"

[[keys]]
id = "bob-key"
sha256 = "{bob}"
tenant = "globex"
user = "bob"
role = "r"

[roles.r]
tools = ["get_*"]
{role_extra}

[[redaction.canaries]]
id = "support-prompt"
value = "{CANARY}"

{extra}
"#,
        alice = sha256_hex(ALICE),
        bob = sha256_hex(BOB),
    )
}

async fn chat(gw: &Gateway, key: &str, text: &str, stream: bool, headers: &[(&str, &[u8])]) -> (u16, String) {
    let mut rb = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]}));
    for (k, v) in headers {
        rb = rb.header(*k, reqwest::header::HeaderValue::from_bytes(v).expect("header value"));
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn audit(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The request record with `x-request-id` `rid`, once written (bounded wait).
async fn record_of(gw: &Gateway, kind: &str, rid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = audit(gw).into_iter().find(|r| r["kind"] == kind && r["request_id"] == rid) {
            return r;
        }
        assert!(Instant::now() < deadline, "no {kind} record for {rid}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a chat with headers and returns its audit record.
async fn chat_record(gw: &Gateway, headers: &[(&str, &[u8])]) -> Value {
    let mut rb = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(ALICE)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    for (k, v) in headers {
        rb = rb.header(*k, reqwest::header::HeaderValue::from_bytes(v).expect("header value"));
    }
    let resp = rb.send().await.expect("request");
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().expect("rid").to_owned();
    record_of(gw, "request", &rid).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_records_carry_the_client_address_and_user_agent_on_both_paths() {
    let srv = upstream::mcp::McpServer::start().await;
    let extra = format!("[listen]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\n[mcp_servers.srv]\nurl = \"{}\"\n", srv.url());
    let gw = Gateway::start(&policy_with("mcp = [\"srv/*\"]", &extra));

    // AI path: the direct peer, the user agent; a forwarded address from an untrusted peer (this
    // test client, 127.0.0.1, is not in 10.0.0.0/8) is a forgery and is not recorded.
    let r = chat_record(&gw, &[("user-agent", b"forensics-test/1.0"), ("x-forwarded-for", b"6.6.6.6")]).await;
    assert!(r["client_addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{r}");
    assert_eq!(r["user_agent"], "forensics-test/1.0", "{r}");
    assert!(r.get("forwarded_for").is_none(), "a forged X-Forwarded-For from an untrusted peer: {r}");
    assert!(!r.to_string().contains("6.6.6.6"), "{r}");
    assert!(r.get("tls_identity").is_none(), "no client certificate on plain TCP: {r}");

    // MCP path.
    let resp = reqwest::Client::new()
        .post(gw.url("/mcp/srv"))
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("user-agent", "mcp-inspector/0.9")
        .header("forwarded", "for=6.6.6.6")
        .json(&upstream::mcp::initialize_request(1, "2025-06-18"))
        .send()
        .await
        .expect("mcp request");
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().expect("rid").to_owned();
    let r = record_of(&gw, "mcp", &rid).await;
    assert!(r["client_addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{r}");
    assert_eq!(r["user_agent"], "mcp-inspector/0.9", "{r}");
    assert!(r.get("forwarded_for").is_none(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_address_is_recorded_only_from_a_trusted_proxy_and_never_when_malformed() {
    // This test client plays the load balancer: 127.0.0.1 is trusted.
    let gw = Gateway::start(&policy("[listen]\ntrusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n"));
    // The right-most address that is not a trusted proxy: what the client put first is not believed.
    let r = chat_record(&gw, &[("x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.1.2.3")]).await;
    assert_eq!(r["forwarded_for"], "198.51.100.7", "{r}");
    assert!(r["client_addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "the peer stays recorded: {r}");
    let r = chat_record(&gw, &[("forwarded", b"for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https")]).await;
    assert_eq!(r["forwarded_for"], "2001:db8::7", "{r}");
    // Malformed headers are ignored, never half-trusted.
    for bad in [&b"198.51.100.7, not-an-address"[..], b"for=unknown", b",,", b"999.1.1.1"] {
        let name = if bad.starts_with(b"for=") { "forwarded" } else { "x-forwarded-for" };
        let r = chat_record(&gw, &[(name, bad)]).await;
        assert!(r.get("forwarded_for").is_none(), "{}: {r}", String::from_utf8_lossy(bad));
    }
    // `firebreak check` refuses a trusted proxy that is not a CIDR block.
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, policy("[listen]\ntrusted_proxies = [\"10.0.0.0/33\", \"lb.example\"]\n")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak")).arg("check").arg(&p).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("lb.example") && text.contains("10.0.0.0/33"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_user_agent_with_control_characters_is_capped_and_escaped() {
    let gw = Gateway::start(&policy(""));
    // A tab, a right-to-left override (sent as UTF-8 bytes), a credential, then 1000 more bytes.
    let mut ua = format!("evil\tagent\u{202e}exe.txt {AWS_KEY} ").into_bytes();
    ua.extend(std::iter::repeat_n(b'A', 1000));
    let r = chat_record(&gw, &[("user-agent", &ua)]).await;
    let got = r["user_agent"].as_str().expect("user agent recorded");
    assert!(got.starts_with("evil\\u{9}agent\\u{202e}exe.txt [REDACTED:"), "{got}");
    assert!(!got.contains('\t') && !got.contains('\u{202e}'), "{got:?}");
    assert!(!got.contains(AWS_KEY), "a credential in a header never reaches the trail: {got}");
    // Cut at 256 characters of the (redacted) agent, then the marker; the two escapes add 11.
    let escapes = "\\u{9}".len() - 1 + "\\u{202e}".len() - 1;
    assert_eq!(got.chars().count(), 256 + escapes + 1, "{got}");
    assert!(got.ends_with("AAA…"), "{got}");
}

/// Lines of the incident's evidence file, once `pred` holds for them (bounded wait).
async fn evidence_when(path: &Path, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if pred(&lines) {
            return lines;
        }
        assert!(Instant::now() < deadline, "evidence never became as expected: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn phase_count(lines: &[Value], phase: &str) -> usize {
    lines.iter().filter(|l| l["phase"] == phase).count()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn verify_bundle(gw: &Gateway, file: &Path, with_key: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"));
    cmd.args(["audit", "verify-bundle"]).arg(file);
    if with_key {
        cmd.arg("--key-file").arg(gw.dir.join("audit.jsonl.key"));
    }
    let out = cmd.output().expect("verify-bundle");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_captures_redacted_evidence_before_and_after_and_exports_a_verifiable_bundle() {
    let extra = r#"
[incidents]
auto_contain = false

[forensics]
enabled = true
dir = "evidence"
before = "10m"
after = "10m"
max_entries = 4
"#;
    let gw = Gateway::start(&policy(extra));
    // Before: six exchanges carrying a credential; the ring keeps the newest (at most 4 with the
    // triggering one).
    for i in 0..6 {
        let (s, _) = chat(&gw, ALICE, &format!("my key is {AWS_KEY}, message {i}"), false, &[]).await;
        assert_eq!(s, 200);
    }
    // Another principal's traffic is not alice's evidence.
    let (s, _) = chat(&gw, BOB, "bob was here", false, &[]).await;
    assert_eq!(s, 200);
    // The canary leaks in a stream: SEV-1 opens for alice (monitor mode: nothing is contained).
    let (s, body) = chat(&gw, ALICE, "leak-plain please", true, &[]).await;
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains(CANARY));
    // After: alice's next exchanges are written too, up to max_entries.
    for i in 0..6 {
        let (s, _) = chat(&gw, ALICE, &format!("after {i} with {AWS_KEY}"), false, &[]).await;
        assert_eq!(s, 200);
    }
    let (_, list) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents", None).await;
    let inc = list["incidents"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["trigger"] == "credential_leakage_confirmed"))
        .cloned()
        .unwrap_or_else(|| panic!("no leak incident: {list}"));
    let id = inc["id"].as_str().expect("id").to_owned();

    let dir = gw.dir.join("evidence");
    let file = dir.join(format!("{id}.jsonl"));
    let lines = evidence_when(&file, |l| phase_count(l, "after") == 4).await;
    assert_eq!(lines[0]["phase"], "header");
    assert_eq!(lines[0]["incident"], id.as_str());
    assert_eq!(phase_count(&lines, "before"), 4, "bounded by max_entries: {lines:#?}");
    assert_eq!(phase_count(&lines, "after"), 4, "bounded by max_entries");
    for l in &lines[1..] {
        assert_eq!(l["exchange"]["user"], "alice", "only alice's exchanges: {l}");
    }
    // The newest before-exchange is the leak itself: what the client received, redacted.
    let leak = &lines.iter().rev().find(|l| l["phase"] == "before").expect("before")["exchange"];
    assert_eq!(leak["stream"], true);
    let received = leak["response"].as_str().expect("the streamed text received");
    assert!(received.contains("[REDACTED:canary.support-prompt]"), "{received}");
    let first_before = &lines.iter().find(|l| l["phase"] == "before").expect("before")["exchange"];
    let req = first_before["request"].to_string();
    assert!(req.contains("message 3") && req.contains("[REDACTED:"), "oldest kept is message 3: {req}");
    // No raw secret in any file of the store; files 0600, the store 0700; the manifest matches.
    assert_eq!(mode(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).expect("store") {
        let p = entry.expect("entry").path();
        // The writer's temporary manifest may be renamed away between the listing and the read.
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(AWS_KEY) && !text.contains(CANARY), "a raw secret in {}", p.display());
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
    }
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(std::fs::read(&file).expect("file")))
    };
    // The manifest is rewritten right after each write: wait for the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let manifest = std::fs::read_to_string(dir.join("MANIFEST.sha256")).unwrap_or_default();
        if manifest.contains(&format!("{digest}  {id}.jsonl")) {
            break;
        }
        assert!(Instant::now() < deadline, "the manifest never named {digest}: {manifest}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The bundle: exported through the CLI, verified offline.
    let out = gw.dir.join("bundle.json");
    let (ok, stdout, stderr) =
        gw.cli(&["admin", "--actor", "ir-lead", "incident", &id, "--export", out.to_str().expect("path")]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(mode(&out), 0o600);
    let text = std::fs::read_to_string(&out).expect("bundle");
    assert!(!text.contains(AWS_KEY) && !text.contains(CANARY), "no raw secret in the bundle");
    let b: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(b["manifest"]["exported_by"], "admin");
    assert_eq!(b["parts"]["incident"]["id"], id.as_str());
    assert!(b["parts"]["incident"]["checklist"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(b["parts"]["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["event"] == "opened")));
    let records = b["parts"]["audit"]["records"].as_array().expect("records");
    assert!(
        records.iter().filter(|r| r["user"] == "alice" && r["kind"] == "request").count() >= 13,
        "{}",
        records.len()
    );
    assert!(records.iter().all(|r| r["user"] != "bob"), "only the principal's records");
    assert_eq!(b["parts"]["audit"]["verification"]["proven"], true);
    assert_eq!(b["parts"]["evidence"]["sha256"], digest.as_str());
    assert!(b["parts"]["context"]["policy_sha256"].as_str().is_some_and(|h| h.len() == 64));
    let (code, said) = verify_bundle(&gw, &out, true);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("OK"), "{said}");
    let (code, said) = verify_bundle(&gw, &out, false);
    assert_eq!(code, 2, "no key: consistent but unproven: {said}");
    assert!(said.contains("UNPROVEN"), "{said}");
    // The export is itself audited, under the authenticated identity; the name the CLI sent is
    // only who it was done for.
    assert!(audit(&gw).iter().any(|r| r["kind"] == "forensics"
        && r["event"] == "exported"
        && r["actor"] == "admin"
        && r["on_behalf_of"] == "ir-lead"));

    // One byte changed in a record, then in the evidence: TAMPERED, naming the part.
    let tamper = |from: &str, to: &str| {
        let at = text.find(from).unwrap_or_else(|| panic!("{from} not in the bundle"));
        let mut t = text.clone();
        t.replace_range(at..at + from.len(), to);
        let p = gw.dir.join("tampered.json");
        std::fs::write(&p, t).expect("write");
        verify_bundle(&gw, &p, true)
    };
    let (code, said) = tamper("\"status\":200", "\"status\":201");
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("TAMPERED") && said.contains("part `audit`"), "{said}");
    let (code, said) = tamper(r#"phase\":\"after"#, r#"phase\":\"aftex"#);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("part `evidence`"), "{said}");
    // A forger who recomputes the part's hash is caught by the manifest's MAC, and one who
    // edits a record in place by the record's MAC.
    let mut forged: Value = serde_json::from_str(&text).expect("json");
    forged["parts"]["audit"]["records"][0]["status"] = json!(299);
    let h = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(serde_json::to_string(&forged["parts"]["audit"]).expect("ser").as_bytes()))
    };
    forged["manifest"]["parts"]["audit"] = json!(h);
    let p = gw.dir.join("forged.json");
    std::fs::write(&p, forged.to_string()).expect("write");
    let (code, said) = verify_bundle(&gw, &p, true);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("manifest"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forensics_off_no_store_is_written_and_the_bundle_still_verifies() {
    let gw = Gateway::start(&policy("[incidents]\nauto_contain = false\n"));
    for _ in 0..3 {
        chat(&gw, ALICE, &format!("my key is {AWS_KEY}"), false, &[]).await;
    }
    let (s, _) = chat(&gw, ALICE, "leak-plain", false, &[]).await;
    assert_eq!(s, 200);
    let (_, list) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents", None).await;
    let id = list["incidents"][0]["id"].as_str().expect("an incident").to_owned();
    for name in ["firebreak-evidence", "evidence"] {
        assert!(!gw.dir.join(name).exists(), "no evidence store when [forensics] is off");
    }
    let out = gw.dir.join("bundle.json");
    let (ok, stdout, stderr) = gw.cli(&["admin", "incident", &id, "--export", out.to_str().expect("path")]);
    assert!(ok, "{stdout}{stderr}");
    let b: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("bundle")).expect("json");
    assert_eq!(b["parts"]["evidence"]["captured"], false);
    assert!(b["parts"]["audit"]["records"].as_array().is_some_and(|r| r.len() >= 4));
    let (code, said) = verify_bundle(&gw, &out, true);
    assert_eq!(code, 0, "{said}");
    // A trail edited before the export: the bundle says so (UNPROVEN), it does not launder it.
    let (s, _) = chat(&gw, BOB, "bob was here", false, &[]).await;
    assert_eq!(s, 200);
    let trail = gw.dir.join("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&trail).unwrap_or_default().contains("\"user\":\"bob\"") {
        assert!(Instant::now() < deadline, "bob's record never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let edited: String =
        std::fs::read_to_string(&trail)
            .expect("trail")
            .lines()
            .map(|l| {
                if l.contains("\"user\":\"bob\"") {
                    l.replace("\"status\":200", "\"status\":201")
                } else {
                    l.to_owned()
                }
            })
            .map(|l| l + "\n")
            .collect();
    std::fs::write(&trail, edited).expect("edit the trail");
    let edited_out = gw.dir.join("edited.json");
    let (ok, stdout, stderr) = gw.cli(&["admin", "incident", &id, "--export", edited_out.to_str().expect("path")]);
    assert!(ok, "{stdout}{stderr}");
    let (code, said) = verify_bundle(&gw, &edited_out, true);
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("not proven at export"), "{said}");
    // Exporting again over an existing, world-readable file leaves it 0600.
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, stdout, stderr) = gw.cli(&["admin", "incident", &id, "--export", out.to_str().expect("path")]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(mode(&out), 0o600);
    // Bad input: an unknown parameter, an id with a path in it.
    let (status, v) = gw.admin(reqwest::Method::GET, &format!("/admin/v1/incidents/{id}/export?as=tar"), None).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents/..%2F..%2Fstate/export", None).await;
    assert_eq!(status, 404, "{v}");
    // An unknown incident is a clear 404.
    let (status, v) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents/INC-99999/export", None).await;
    assert_eq!(status, 404, "{v}");
    // A file that is not a bundle is TAMPERED, not a crash.
    let junk = gw.dir.join("junk.json");
    std::fs::write(&junk, "{\"format\": \"fire").expect("write");
    let (code, said) = verify_bundle(&gw, &junk, true);
    assert_eq!(code, 1, "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_exchanges_json_and_streamed_are_captured_redacted() {
    use upstream::mcp::{text_result, Answer, McpClient};
    let srv = upstream::mcp::McpServer::start().await;
    let extra = format!(
        "[incidents]\nauto_contain = false\n\n[forensics]\nenabled = true\n\n[mcp_servers.srv]\nurl = \"{}\"\n",
        srv.url()
    );
    let gw = Gateway::start(&policy_with("mcp = [\"srv/*\"]", &extra));
    let mut c = McpClient::new(&gw.url("/mcp/srv"), Some(ALICE));
    c.initialize("2025-06-18").await;
    assert!(c.list_tool_names().await.contains(&"echo".to_owned()));
    // The server's result leaks a credential: redacted for the client, and an incident opens.
    srv.set_tool_result("echo", text_result(&format!("the key is {AWS_KEY}")));
    let a = c.rpc(1, "tools/call", json!({"name": "echo", "arguments": {"message": format!("mine: {AWS_KEY}")}})).await;
    assert!(!a.to_string().contains(AWS_KEY), "{a}");
    // Then a streamed answer, in the incident's "after" window.
    srv.set_answer(Answer::Sse(upstream::Chunking::Whole));
    let a = c.rpc(2, "tools/call", json!({"name": "echo", "arguments": {"message": "again"}})).await;
    assert!(!a.to_string().contains(AWS_KEY), "{a}");

    let (_, list) = gw.admin(reqwest::Method::GET, "/admin/v1/incidents", None).await;
    let id = list["incidents"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["trigger"] == "credential_leakage_confirmed"))
        .and_then(|i| i["id"].as_str())
        .unwrap_or_else(|| panic!("no leak incident: {list}"))
        .to_owned();
    let dir = gw.dir.join("firebreak-evidence");
    let lines = evidence_when(&dir.join(format!("{id}.jsonl")), |l| phase_count(l, "after") >= 1).await;
    let leak = lines
        .iter()
        .find(|l| l["phase"] == "before" && l["exchange"]["request"].to_string().contains("mine: "))
        .unwrap_or_else(|| panic!("the leaking call is in the before window: {lines:#?}"));
    assert_eq!(leak["exchange"]["kind"], "mcp");
    assert!(leak["exchange"]["response"].to_string().contains("[REDACTED:aws_access_key_id]"), "{leak}");
    let after = lines.iter().find(|l| l["phase"] == "after").expect("after");
    assert_eq!(after["exchange"]["stream"], true, "{after}");
    let streamed = after["exchange"]["response"].as_str().expect("the event stream the client received");
    assert!(streamed.contains("event: message") && streamed.contains("[REDACTED:aws_access_key_id]"), "{streamed}");
    for entry in std::fs::read_dir(&dir).expect("store") {
        let p = entry.expect("entry").path();
        // The writer's temporary manifest may be renamed away between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        assert!(!text.contains(AWS_KEY), "{}", p.display());
    }
}
