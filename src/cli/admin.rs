//! `firebreak admin …`: a thin client of the admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Admin API base URL.
    #[arg(long, env = "FIREBREAK_ADMIN_URL", default_value = "http://127.0.0.1:9090", global = true)]
    url: String,
    /// Environment variable holding the admin token.
    #[arg(long, default_value = "FIREBREAK_ADMIN_TOKEN", global = true)]
    token_env: String,
    /// Who is acting (recorded in the audit trail; default: $USER).
    #[arg(long, global = true)]
    actor: Option<String>,
    /// Why (recorded in the audit trail).
    #[arg(long, global = true)]
    reason: Option<String>,
    /// Apply only if the state is still at this version (409 otherwise).
    #[arg(long, global = true)]
    expect_version: Option<u64>,
    /// Break-glass: act on this replica alone, as a tightening overlay that works with PostgreSQL
    /// down (only with `level`, `safe-mode on`, `lift` and `state`).
    #[arg(long, global = true)]
    local: bool,
    /// Fleet mode: after the commit, wait (at most TIMEOUT, default the policy's `wait_timeout`)
    /// until every live replica applied the new version; exit 3 when some did not.
    #[arg(long, global = true, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "", require_equals = true)]
    wait_all: Option<String>,
    #[command(flatten)]
    tls: super::admin_tls::TlsArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Show the switch state (with `local_override` when break-glass is in force here).
    State,
    /// Lift this replica's break-glass override: one entry by id, or all (`admin --local lift`).
    Lift {
        /// The entry's id (from `admin --local state`); all when absent.
        id: Option<u32>,
    },
    /// Set the degradation level (normal, elevated, critical, lockdown).
    Level {
        /// The level.
        level: String,
    },
    /// Turn safe mode on or off.
    SafeMode {
        /// on or off.
        mode: OnOff,
    },
    /// Block a user (cuts their open streams).
    BlockUser {
        /// User id.
        user: String,
        /// For how long (e.g. 30m, 1h).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Lift a user block.
    UnblockUser {
        /// User id.
        user: String,
    },
    /// Block a tenant.
    BlockTenant {
        /// Tenant id.
        tenant: String,
        /// For how long.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Lift a tenant block.
    UnblockTenant {
        /// Tenant id.
        tenant: String,
    },
    /// Revoke a virtual key by id.
    RevokeKey {
        /// Key id.
        key_id: String,
    },
    /// Terminate a session.
    TerminateSession {
        /// Session id.
        session: String,
    },
    /// Disable a model tool.
    DisableTool {
        /// Tool name.
        tool: String,
    },
    /// Re-enable a model tool.
    EnableTool {
        /// Tool name.
        tool: String,
    },
    /// Disable an endpoint (chat_completions, responses, embeddings, models, messages).
    DisableEndpoint {
        /// Endpoint.
        endpoint: String,
    },
    /// Re-enable an endpoint.
    EnableEndpoint {
        /// Endpoint.
        endpoint: String,
    },
    /// Block egress to a host or domain (tool-call arguments and links in output).
    BlockEgress {
        /// Host, domain or IP.
        host: String,
        /// For how long.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Lift an egress block.
    UnblockEgress {
        /// Host, domain or IP.
        host: String,
    },
    /// Isolate an MCP server: no traffic reaches it and its open streams end.
    Isolate {
        /// Server name from [mcp_servers].
        server: String,
        /// For how long.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Lift an MCP server's isolation.
    Restore {
        /// Server name.
        server: String,
    },
    /// List isolated MCP servers.
    Isolated,
    /// List MCP tool definitions waiting for approval: in full, diffed against the trusted one,
    /// with why (changed, poisoned, frozen) and the hash to approve.
    PendingTools {
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Trust the pending definition of an MCP tool you reviewed; refused when it changed since.
    ApproveTool {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// SHA-256 of the definition you reviewed (from `pending-tools`).
        #[arg(long)]
        hash: String,
    },
    /// Drop the pending definition of an MCP tool you reviewed (the trusted one stays).
    RejectTool {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// SHA-256 of the pending definition you reviewed.
        #[arg(long)]
        hash: String,
    },
    /// Reject every new or changed tool definition of an MCP server.
    FreezeTools {
        /// Server name.
        server: String,
    },
    /// Accept new MCP tool definitions again (trust on first use).
    UnfreezeTools {
        /// Server name.
        server: String,
    },
    /// Re-read one upstream's (or MCP server's) credential from its env var or file and swap it in.
    RotateCredential {
        /// Upstream or MCP server name.
        name: String,
    },
    /// Rotate every upstream and MCP server credential (the mass-compromise playbook).
    RotateAll,
    /// Emergency rotation of a leaked managed prompt: its backup (or the fallback) goes live with a
    /// new canary; the old version is invalidated and the old canary stays detected.
    RotatePrompt {
        /// Prompt id from `[prompts.*]`.
        id: String,
    },
    /// Issue a new canary for a managed prompt (the text stays); the old canary stays detected.
    RotateCanary {
        /// Prompt id.
        id: String,
    },
    /// Put a managed prompt's primary text back in force (after it was rewritten and reloaded).
    RestorePrompt {
        /// Prompt id.
        id: String,
    },
    /// Apply a whole batch from a JSON file (`{"actions":[…],"reason":"…"}` or just `[…]`).
    Apply {
        /// The file.
        file: PathBuf,
    },
    /// Reload the policy (validated first; an invalid one is rejected).
    Reload {
        /// Fleet mode: every replica reloads its own policy file (the answer lists each one's
        /// result: the new policy hash, or why it was rejected).
        #[arg(long)]
        all: bool,
    },
    /// Run a containment plan (sev1..sev4 or one of the policy's [plans]) for a principal, as one
    /// atomic batch.
    Contain {
        /// Plan name.
        #[arg(long)]
        plan: String,
        /// User to contain.
        #[arg(long)]
        user: Option<String>,
        /// Tenant to contain.
        #[arg(long)]
        tenant: Option<String>,
        /// Session to contain.
        #[arg(long)]
        session: Option<String>,
    },
    /// List incidents (newest first).
    Incidents {
        /// Only open ones.
        #[arg(long)]
        open: bool,
    },
    /// Show one incident, or resolve it.
    Incident {
        /// Incident id (INC-00001).
        id: String,
        /// Mark it resolved.
        #[arg(long)]
        resolve: bool,
        /// A note recorded with it.
        #[arg(long)]
        note: Option<String>,
        /// Write its forensic bundle to this file (0600): the incident, its timeline, the audit
        /// records of its principal with the chain proof, captured evidence, a signed manifest.
        /// Verify it with `firebreak audit verify-bundle FILE`.
        #[arg(long, value_name = "FILE", conflicts_with = "resolve")]
        export: Option<PathBuf>,
    },
    /// Who the admin API takes you for: identity id and role.
    Whoami,
    /// List actions waiting for a second approval (the two-person rule).
    Pending,
    /// Approve a pending action: it is applied now (a different identity from the one who asked).
    Approve {
        /// Pending id (p-…), from `admin pending` or the 202 answer.
        id: String,
    },
    /// Reject (or, as its requester, withdraw) a pending action: nothing is applied.
    Reject {
        /// Pending id.
        id: String,
    },
    /// Recent alerts and anomalies: incidents, triggers close to firing, rule spikes, sink
    /// counters (`--limit N`); `alerts test SINK` sends a test alert through a sink.
    Alerts(super::alerts::Args),
    /// Show each upstream's and MCP server's circuit breaker: state, failure rate, consecutive
    /// failures, last error class, time in state.
    CircuitStatus {
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// The fleet (fleet mode only): every replica with its heartbeat, applied switch version, lag
    /// and policy hash; `!` marks a replica that lags, runs another policy, or is not live.
    Fleet {
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print audit records.
    Audit {
        /// RFC 3339 time or a duration back from now (e.g. 1h).
        #[arg(long)]
        since: Option<String>,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(a))
}

fn action(cmd: &Cmd) -> anyhow::Result<Option<Value>> {
    Ok(Some(match cmd {
        Cmd::Level { level } => json!({"action": "set_level", "level": level}),
        Cmd::SafeMode { mode } => json!({"action": "safe_mode", "enabled": matches!(mode, OnOff::On)}),
        Cmd::BlockUser { user, ttl } => json!({"action": "block_user", "user": user, "ttl": ttl}),
        Cmd::UnblockUser { user } => json!({"action": "unblock_user", "user": user}),
        Cmd::BlockTenant { tenant, ttl } => json!({"action": "block_tenant", "tenant": tenant, "ttl": ttl}),
        Cmd::UnblockTenant { tenant } => json!({"action": "unblock_tenant", "tenant": tenant}),
        Cmd::RevokeKey { key_id } => json!({"action": "revoke_key", "key_id": key_id}),
        Cmd::TerminateSession { session } => json!({"action": "terminate_session", "session": session}),
        Cmd::DisableTool { tool } => json!({"action": "disable_tool", "tool": tool}),
        Cmd::EnableTool { tool } => json!({"action": "enable_tool", "tool": tool}),
        Cmd::DisableEndpoint { endpoint } => json!({"action": "disable_endpoint", "endpoint": endpoint}),
        Cmd::EnableEndpoint { endpoint } => json!({"action": "enable_endpoint", "endpoint": endpoint}),
        Cmd::BlockEgress { host, ttl } => json!({"action": "block_egress", "host": host, "ttl": ttl}),
        Cmd::UnblockEgress { host } => json!({"action": "unblock_egress", "host": host}),
        Cmd::Isolate { server, ttl } => json!({"action": "isolate_server", "server": server, "ttl": ttl}),
        Cmd::Restore { server } => json!({"action": "restore_server", "server": server}),
        Cmd::ApproveTool { server, tool, hash } => {
            json!({"action": "approve_tool", "server": server, "tool": tool, "hash": hash})
        }
        Cmd::RejectTool { server, tool, hash } => {
            json!({"action": "reject_tool", "server": server, "tool": tool, "hash": hash})
        }
        Cmd::FreezeTools { server } => json!({"action": "freeze_tools", "server": server}),
        Cmd::UnfreezeTools { server } => json!({"action": "unfreeze_tools", "server": server}),
        Cmd::RestorePrompt { id } => json!({"action": "restore_prompt", "prompt": id}),
        _ => return Ok(None),
    }))
}

async fn run_async(a: Args) -> anyhow::Result<ExitCode> {
    let token = std::env::var(&a.token_env).with_context(|| format!("set the admin token in ${}", a.token_env))?;
    let actor = a.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
    let reason = a.reason.clone().unwrap_or_else(|| "no reason given (firebreak admin)".into());
    // `lift` ends break-glass overrides, with or without `--local`.
    let (method, path, body) = if let Cmd::Lift { id } = &a.cmd {
        match id {
            Some(id) => ("DELETE", format!("/admin/v1/local/switches/{id}"), None),
            None => ("DELETE", "/admin/v1/local/switches".to_owned(), None),
        }
    } else if a.local {
        match &a.cmd {
            Cmd::Level { .. } | Cmd::SafeMode { mode: OnOff::On } => {
                let act = action(&a.cmd)?.unwrap_or_default();
                let body = json!({"actions": [strip_nulls(act)], "reason": reason, "actor": actor});
                ("POST", "/admin/v1/local/switches".to_owned(), Some(body))
            }
            Cmd::SafeMode { mode: OnOff::Off } => {
                bail!("a local override only tightens: to end a local safe mode, lift it (`firebreak admin --local lift [ID]`)")
            }
            Cmd::State => ("GET", "/admin/v1/state".to_owned(), None),
            _ => bail!("--local is accepted only with `level`, `safe-mode on`, `lift` and `state`"),
        }
    } else if let Some(act) = action(&a.cmd)? {
        let mut batch = json!({"actions": [strip_nulls(act)], "reason": reason, "actor": actor});
        if let Some(v) = a.expect_version {
            batch["expect_version"] = json!(v);
        }
        ("POST", "/admin/v1/switches".to_owned(), Some(batch))
    } else {
        match &a.cmd {
            Cmd::State | Cmd::Isolated => ("GET", "/admin/v1/state".to_owned(), None),
            Cmd::PendingTools { .. } => ("GET", "/admin/v1/tools/pending".to_owned(), None),
            Cmd::CircuitStatus { .. } => ("GET", "/admin/v1/circuits".to_owned(), None),
            Cmd::Fleet { .. } => ("GET", "/admin/v1/fleet".to_owned(), None),
            Cmd::Reload { all: false } => ("POST", "/admin/v1/policy/reload".to_owned(), Some(json!({}))),
            Cmd::Reload { all: true } => ("POST", "/admin/v1/policy/reload?all=true".to_owned(), Some(json!({}))),
            Cmd::RotateCredential { name } => {
                ("POST", format!("/admin/v1/rotate/credential/{name}"), Some(json!({"reason": reason, "actor": actor})))
            }
            Cmd::RotateAll => {
                ("POST", "/admin/v1/rotate/credentials".to_owned(), Some(json!({"reason": reason, "actor": actor})))
            }
            Cmd::RotatePrompt { id } | Cmd::RotateCanary { id } => {
                let what = if matches!(a.cmd, Cmd::RotatePrompt { .. }) { "prompt" } else { "canary" };
                let mut body = json!({"reason": reason, "actor": actor});
                if let Some(v) = a.expect_version {
                    body["expect_version"] = json!(v);
                }
                ("POST", format!("/admin/v1/rotate/{what}/{id}"), Some(body))
            }
            Cmd::Contain { plan, user, tenant, session } => {
                let mut body = json!({"reason": reason, "actor": actor});
                for (k, v) in [("user", user), ("tenant", tenant), ("session", session)] {
                    if let Some(v) = v {
                        body[k] = json!(v);
                    }
                }
                ("POST", format!("/admin/v1/playbooks/{plan}"), Some(body))
            }
            Cmd::Incidents { open } => (
                "GET",
                if *open { "/admin/v1/incidents?status=open".to_owned() } else { "/admin/v1/incidents".to_owned() },
                None,
            ),
            Cmd::Incident { id, export: Some(_), .. } => {
                ("GET", format!("/admin/v1/incidents/{id}/export?actor={}", super::bundle::query_escape(&actor)), None)
            }
            Cmd::Incident { id, resolve: true, note, .. } => (
                "POST",
                format!("/admin/v1/incidents/{id}/resolve"),
                Some(json!({"actor": actor, "note": note.clone().or(a.reason.clone()).unwrap_or_default()})),
            ),
            Cmd::Incident { id, .. } => ("GET", format!("/admin/v1/incidents/{id}"), None),
            Cmd::Whoami => ("GET", "/admin/v1/whoami".to_owned(), None),
            Cmd::Pending => ("GET", "/admin/v1/pending".to_owned(), None),
            Cmd::Approve { id } => ("POST", format!("/admin/v1/pending/{id}/approve"), Some(json!({}))),
            Cmd::Reject { id } => ("POST", format!("/admin/v1/pending/{id}/reject"), Some(json!({}))),
            Cmd::Audit { since } => (
                "GET",
                match since {
                    Some(s) => format!("/admin/v1/audit?since={s}"),
                    None => "/admin/v1/audit".to_owned(),
                },
                None,
            ),
            Cmd::Alerts(al) => al.request(&actor),
            Cmd::Apply { file } => {
                let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                let v: Value =
                    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
                let mut batch = match v {
                    Value::Array(actions) => json!({"actions": actions}),
                    Value::Object(_) => v,
                    _ => bail!("{}: expected an object with \"actions\" or an array of actions", file.display()),
                };
                if batch.get("reason").is_none() {
                    batch["reason"] = json!(reason);
                }
                if batch.get("actor").is_none() {
                    batch["actor"] = json!(actor);
                }
                if let Some(v) = a.expect_version {
                    batch["expect_version"] = json!(v);
                }
                ("POST", "/admin/v1/switches".to_owned(), Some(batch))
            }
            _ => unreachable!("every switch command maps to an action"),
        }
    };
    let path = match (&a.wait_all, path.as_str()) {
        (Some(t), "/admin/v1/switches") if t.is_empty() => format!("{path}?wait=all"),
        (Some(t), "/admin/v1/switches") => format!("{path}?wait=all&timeout={t}"),
        _ => path,
    };
    let uri: http::Uri = format!("{}{}", a.url.trim_end_matches('/'), path).parse().context("invalid --url")?;
    let client = super::admin_tls::client(&a.tls)?;
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))?;
    let resp = client.request(req).await.with_context(|| format!("cannot reach the admin API at {}", a.url))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if let (Cmd::Incident { export: Some(file), .. }, true) = (&a.cmd, status.is_success()) {
        return super::bundle::write(file, &bytes);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if matches!(a.cmd, Cmd::Isolated) && status.is_success() => {
            let isolated = v.pointer("/state/isolated_servers").or_else(|| v.get("isolated_servers"));
            out(&serde_json::to_string_pretty(isolated.unwrap_or(&json!({})))?)
        }
        Ok(v) if matches!(a.cmd, Cmd::PendingTools { json: false }) && status.is_success() => out(&pending_text(&v)),
        Ok(v) if matches!(&a.cmd, Cmd::Alerts(al) if al.wants_text()) => {
            if let Cmd::Alerts(al) = &a.cmd {
                out(&al.text(&v));
            }
        }
        Ok(v) if matches!(a.cmd, Cmd::CircuitStatus { json: false }) && status.is_success() => {
            out(&super::circuit::text(&v))
        }
        Ok(v) if matches!(a.cmd, Cmd::Fleet { json: false }) && status.is_success() => out(&super::fleet::table(&v)),
        Ok(v) if a.wait_all.is_some() && v.pointer("/fleet/complete") == Some(&Value::Bool(false)) => {
            out(&serde_json::to_string_pretty(&v)?);
            let laggards: Vec<String> = v["fleet"]["laggards"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|l| {
                    format!(
                        "{} (applied {}, last seen {})",
                        l["id"].as_str().unwrap_or("?"),
                        l["applied"],
                        l["last_seen"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            eprintln!(
                "committed as version {}, but not every live replica applied it within the wait: {}",
                v["version"],
                laggards.join(", ")
            );
            return Ok(ExitCode::from(3));
        }
        Ok(v) => out(&serde_json::to_string_pretty(&v)?),
        Err(_) => out(&String::from_utf8_lossy(&bytes)),
    }
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `admin pending-tools` for people: per tool, why it is pending, both hashes, the diff, and the
/// command that approves exactly this definition.
fn pending_text(v: &Value) -> String {
    let list = v["pending"].as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "no MCP tool definition is waiting for approval".into();
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut o = String::new();
    for p in list {
        o.push_str(&format!(
            "{} — {} (rule {}, since {})\n",
            s(&p["tool"]),
            s(&p["reason"]),
            s(&p["rule"]),
            s(&p["since"])
        ));
        o.push_str(&format!("  pending hash: {}\n  trusted hash: {}\n", s(&p["hash"]), s(&p["pinned_hash"])));
        match p["diff"].as_array() {
            Some(lines) => {
                o.push_str("  --- trusted\n  +++ pending\n");
                for l in lines {
                    o.push_str(&format!("  {}\n", l.as_str().unwrap_or_default()));
                }
            }
            None => o.push_str("  (definition too large to keep: review the server's tools/list by its hash)\n"),
        }
        let (server, name, hash) = (s(&p["server"]), s(&p["name"]), s(&p["hash"]));
        o.push_str(&format!("  approve: firebreak admin --reason … approve-tool {server} {name} --hash {hash}\n"));
        o.push_str(&format!("  reject:  firebreak admin --reason … reject-tool {server} {name} --hash {hash}\n\n"));
    }
    o.trim_end().to_owned()
}

/// Prints a line; a closed stdout (`… | head`) is not an error worth a panic.
fn out(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}
