//! Hardening of containment (issue 13): automatic containment scoped to the offending principal
//! unless corroborated, MCP tool approvals bound to the reviewed definition, and expired switch
//! entries purged from the state file.

mod common;

use std::time::{Duration, Instant};

use common::{sha256_hex, Gateway};
use reqwest::Method;
use serde_json::{json, Value};

async fn state(gw: &Gateway) -> Value {
    gw.admin(Method::GET, "/admin/v1/state", None).await.1
}

fn state_file(gw: &Gateway) -> Value {
    let text = std::fs::read_to_string(gw.dir.join("state.json")).expect("state file");
    serde_json::from_str(&text).expect("state file is JSON")
}

fn seconds_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Every expiring list of the snapshot, as the state file names them.
const EXPIRING: [&str; 9] = [
    "blocked_users",
    "blocked_tenants",
    "terminated_sessions",
    "disabled_tools",
    "disabled_endpoints",
    "blocked_egress",
    "isolated_servers",
    "limited_users",
    "revoked_keys",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_purged_from_the_state_file_and_never_return() {
    let policy = format!(
        "[upstreams.s]\nkind = \"scripted\"\n\n[[upstreams.s.replies]]\ntext = \"hi\"\n\n\
         [[keys]]\nid = \"alice-key\"\nsha256 = \"{}\"\ntenant = \"acme\"\nuser = \"alice\"\nrole = \"r\"\n\n\
         [roles.r]\n\n[mcp_servers.srv]\nurl = \"http://127.0.0.1:9/mcp\"\n",
        sha256_hex("fbk-purge-alice")
    );
    let gw = Gateway::start(&policy);
    let ttl = "1s";
    let (status, v) = gw
        .switches(json!({"reason": "short-lived containment", "actions": [
            {"action": "block_user", "user": "alice", "ttl": ttl},
            {"action": "block_tenant", "tenant": "acme", "ttl": ttl},
            {"action": "terminate_session", "session": "s1", "ttl": ttl},
            {"action": "disable_tool", "tool": "get_weather", "ttl": ttl},
            {"action": "disable_endpoint", "endpoint": "embeddings", "ttl": ttl},
            {"action": "block_egress", "host": "evil.example", "ttl": ttl},
            {"action": "isolate_server", "server": "srv", "ttl": ttl},
            {"action": "limit_user", "user": "alice", "requests_per_minute": 1, "ttl": ttl},
            // Without a ttl: stays.
            {"action": "block_user", "user": "mallory"},
        ]}))
        .await;
    assert_eq!(status, 200, "{v}");
    let file = state_file(&gw);
    assert!(file["isolated_servers"]["srv"].is_object(), "{file}");
    let expires = file["isolated_servers"]["srv"]["expires_unix"].as_u64().expect("expires_unix");

    // Wait (bounded) until every entry has expired by the wall clock, then change something else.
    let deadline = Instant::now() + Duration::from_secs(10);
    while seconds_now() < expires {
        assert!(Instant::now() < deadline, "the clock did not reach {expires}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, v) =
        gw.switches(json!({"reason": "later change", "actions": [{"action": "block_user", "user": "bob"}]})).await;
    assert_eq!(status, 200, "{v}");

    for (what, v) in [("state file", state_file(&gw)), ("admin state", state(&gw).await)] {
        for list in EXPIRING {
            let names: Vec<&String> = v[list].as_object().map(|m| m.keys().collect()).unwrap_or_default();
            let expected: &[&str] = if list == "blocked_users" { &["bob", "mallory"] } else { &[] };
            assert_eq!(names, expected, "{what}: {list} still holds expired entries: {v}");
        }
    }

    // An entry written with `expires` only (a hand-edited file) is not permanent: after a restart it
    // is read with its end and, being over, purged.
    let mut file = state_file(&gw);
    file["isolated_servers"] = json!({"srv": {"reason": "hand-written", "actor": "ops", "since": "2020-01-01T00:00:00Z", "expires": "2020-01-02T00:00:00Z"}});
    std::fs::write(gw.dir.join("state.json"), serde_json::to_vec_pretty(&file).expect("json")).expect("write");
    let gw = gw.restart();
    let s = state(&gw).await;
    assert!(s["isolated_servers"].as_object().is_none_or(|m| m.is_empty()), "an expired isolation came back: {s}");
}
