//! `firebreak mcp verify SERVER`: the playbook's "scan the MCP server". Lists the server's tools
//! with their pin standing (pinned, trusted on first use, new, changed, poisoned, frozen) and the
//! description checks, through a running gateway's admin API or directly against the server; exit 1
//! when any tool is not trusted (CI), 2 when the server or the gateway cannot be asked.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::config::{self, Policy};
use crate::mcp::verify;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// List an MCP server's tools with their pin status and the description checks; exit 1 when
    /// any tool is not trusted.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The server's name (as in the policy's [mcp_servers]; pins are keyed by it).
    server: String,
    /// Ask a running gateway: its admin API base URL (the token is read from --token-env).
    #[arg(long, conflicts_with_all = ["url", "policy", "state_file"])]
    gateway: Option<String>,
    /// Ask the server directly: its Streamable HTTP endpoint (default: the policy's url for SERVER).
    #[arg(long)]
    url: Option<String>,
    /// The policy with the server's pins, credential and injection signatures (direct mode).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The state file with the pins trusted on first use (default: the policy's [storage] state_file).
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Environment variable holding the admin token (--gateway).
    #[arg(long, default_value = "FIREBREAK_ADMIN_TOKEN")]
    token_env: String,
    /// Count tools never seen before as trusted (the gateway would trust them on first use).
    #[arg(long)]
    allow_new: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Time allowed for each request.
    #[arg(long, default_value = "10s")]
    timeout: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Cmd::Verify(v) = a.cmd;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_verify(v))
}

async fn run_verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let timeout = humantime::parse_duration(&a.timeout).context("--timeout: write e.g. 10s")?;
    let (report, via) = match &a.gateway {
        Some(url) => (through_gateway(url, &a, timeout).await?, format!("through the gateway at {url}")),
        None => direct(&a, timeout).await?,
    };
    let untrusted: Vec<(String, String)> = report["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| !trusted(t["status"].as_str().unwrap_or(""), a.allow_new))
        .map(|t| (s(&t["name"]), s(&t["status"])))
        .collect();
    if a.json {
        let mut out = report.clone();
        out["trusted"] = Value::Bool(untrusted.is_empty());
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", text(&report, &via, &untrusted));
    }
    Ok(if untrusted.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_owned()
}

fn trusted(status: &str, allow_new: bool) -> bool {
    matches!(status, "pinned" | "trusted_on_first_use") || (allow_new && status == "new")
}

fn text(report: &Value, via: &str, untrusted: &[(String, String)]) -> String {
    let tools = report["tools"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut o = format!("MCP server `{}` ({via}): {} tool(s)\n", s(&report["server"]), tools.len());
    let width = tools.iter().map(|t| s(&t["name"]).chars().count()).max().unwrap_or(0);
    for t in tools {
        o.push_str(&format!("  {:<width$}  {:<20}  {}\n", s(&t["name"]), s(&t["status"]), s(&t["detail"])));
        if let Some(other) = t["shadows"].as_str() {
            o.push_str(&format!("  {:<width$}  {:<20}  note: same name as a tool of server `{other}`\n", "", ""));
        }
        o.push_str(&format!("  {:<width$}  {:<20}  sha256 {}\n", "", "", s(&t["hash"])));
    }
    if untrusted.is_empty() {
        o.push_str("every tool is trusted");
    } else {
        let list: Vec<String> = untrusted.iter().map(|(n, st)| format!("{n} ({st})")).collect();
        o.push_str(&format!("NOT TRUSTED: {}", list.join(", ")));
    }
    o
}

async fn through_gateway(base: &str, a: &VerifyArgs, timeout: Duration) -> anyhow::Result<Value> {
    let token = std::env::var(&a.token_env).with_context(|| format!("set the admin token in ${}", a.token_env))?;
    let uri: http::Uri = format!("{}/admin/v1/mcp/servers/{}/verify", base.trim_end_matches('/'), a.server)
        .parse()
        .context("invalid --gateway URL or server name")?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    // The gateway asks the server in turn: allow it a few of its own requests.
    let resp = tokio::time::timeout(timeout * 4, client.request(req))
        .await
        .context("the gateway did not answer in time")?
        .with_context(|| format!("cannot reach the admin API at {base}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the gateway answered {status} with something that is not JSON"))?;
    if !status.is_success() {
        bail!("the gateway answered {status}: {}", v["error"]["message"].as_str().unwrap_or(&v.to_string()));
    }
    Ok(v)
}

async fn direct(a: &VerifyArgs, timeout: Duration) -> anyhow::Result<(Value, String)> {
    let policy = match &a.policy {
        Some(p) => config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        // No policy: no pins, the built-in injection signatures.
        None => config::load_str("<built-in defaults>", "", std::path::Path::new("."))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let mut server = server_of(&policy, &a.server, a.url.as_deref())?;
    if let Some(u) = &a.url {
        server.url = u.parse().with_context(|| format!("--url `{u}` is not a URL"))?;
        if !matches!(server.url.scheme_str(), Some("http" | "https")) || server.url.host().is_none() {
            bail!("--url `{u}` is not an http(s) URL");
        }
    }
    let snap = match (&a.state_file, &a.policy) {
        (Some(f), _) => crate::state::StateStore::open(f)?.load(),
        (None, Some(_)) => crate::state::StateStore::open(&policy.storage.state_file)?.load(),
        (None, None) => std::sync::Arc::new(crate::state::Snapshot::default()),
    };
    let client = crate::http::outbound::new_client(server.extra_ca.as_deref(), &policy.limits)
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?;
    let limits = verify::Limits { timeout, max_bytes: policy.limits.max_response_body };
    let tools = verify::list_tools(&client, &server, limits)
        .await
        .map_err(|e| anyhow::anyhow!("MCP server `{}` at {}: {e}", a.server, server.url))?;
    let report = verify::assess(&policy, &snap, &server, &tools);
    Ok((serde_json::to_value(&report)?, format!("directly at {}", server.url)))
}

/// The policy's server (its pins, credential, CA), or a bare one when only `--url` names it.
fn server_of(policy: &Policy, name: &str, url: Option<&str>) -> anyhow::Result<config::mcp::McpServer> {
    use config::mcp::{McpServer, Permit, PoisonAction};
    if let Some(s) = policy.mcp.servers.get(name) {
        let credential = config::Credential::from_source(s.credential.source().cloned());
        return Ok(McpServer {
            name: s.name.clone(),
            url: s.url.clone(),
            credential,
            credential_header: s.credential_header.clone(),
            extra_ca: s.extra_ca.clone(),
            sampling: s.sampling,
            elicitation: s.elicitation,
            description_injection: s.description_injection,
            pins: s.pins.clone(),
            tools: Default::default(),
            circuit: None,
        });
    }
    if url.is_none() {
        bail!("no MCP server `{name}` in the policy: give its --url (or --gateway, or a --policy that declares it)");
    }
    Ok(McpServer {
        name: name.to_owned(),
        url: http::Uri::from_static("http://127.0.0.1/"),
        credential: config::Credential::default(),
        credential_header: http::header::AUTHORIZATION,
        extra_ca: None,
        sampling: Permit::Refuse,
        elicitation: Permit::Refuse,
        description_injection: PoisonAction::Withhold,
        pins: Default::default(),
        tools: Default::default(),
        circuit: None,
    })
}
