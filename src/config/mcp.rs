//! The `[mcp]` and `[mcp_servers.*]` sections: the MCP servers firebreak fronts, and how it treats
//! them. Compiled from the main policy file only (includes cannot add servers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::header::HeaderName;

use super::compile::{compile_args, path, resolve_path};
use super::raw::RawPolicy;
use super::validate::Problems;
use super::{ArgRule, TokenSource};

/// MCP settings of a policy.
#[derive(Debug, Default)]
pub struct McpPolicy {
    /// Browser origins allowed to call `/mcp/*` (exact `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Servers by name (the `<server>` of `/mcp/<server>`).
    pub servers: BTreeMap<String, Arc<McpServer>>,
}

impl McpPolicy {
    /// Whether the policy declares `server/tool` as having side effects (an action rather than a
    /// data read, for the bulk-extraction trigger).
    pub fn acts(&self, server_tool: &str) -> bool {
        let Some((server, tool)) = server_tool.split_once('/') else { return false };
        self.servers.get(server).and_then(|s| s.tools.get(tool)).is_some_and(|t| t.side_effects == Some(true))
    }
}

/// Whether a kind of server-to-client request is let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Forwarded to the client.
    Allow,
    /// Dropped, and answered to the server with a JSON-RPC error.
    Refuse,
}

/// What a tool description that matches an injection signature gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonAction {
    /// The tool is withheld from `tools/list` and refused in `tools/call`.
    Withhold,
    /// Recorded in the audit trail only.
    Flag,
}

/// One MCP server.
#[derive(Debug)]
pub struct McpServer {
    /// Name in the policy.
    pub name: String,
    /// Its Streamable HTTP endpoint.
    pub url: http::Uri,
    /// Its credential (None inside: none configured, or not readable); rotated in place.
    pub credential: super::Credential,
    /// The header the credential goes in.
    pub credential_header: HeaderName,
    /// Extra CA for an HTTPS server.
    pub extra_ca: Option<PathBuf>,
    /// `sampling/createMessage` from the server.
    pub sampling: Permit,
    /// `elicitation/create` from the server.
    pub elicitation: Permit,
    /// Descriptions matching injection signatures.
    pub description_injection: PoisonAction,
    /// Pinned definition hashes by tool name (SHA-256 of the canonical definition).
    pub pins: BTreeMap<String, [u8; 32]>,
    /// What the policy says of its tools.
    pub tools: BTreeMap<String, McpToolInfo>,
    /// Its circuit breaker's limits (None: no breaker).
    pub circuit: Option<super::circuit::CircuitSettings>,
}

/// What the policy says of one MCP tool.
#[derive(Debug, Default)]
pub struct McpToolInfo {
    /// Declared side effects (None: the server's `readOnlyHint`, else assumed).
    pub side_effects: Option<bool>,
    /// Argument constraints.
    pub args: BTreeMap<String, ArgRule>,
}

fn permit(v: Option<&str>, file: usize, at: Vec<super::validate::Seg>, problems: &mut Problems) -> Permit {
    match v {
        None | Some("refuse") => Permit::Refuse,
        Some("allow") => Permit::Allow,
        Some(other) => {
            problems.add(file, at, format!("unknown value `{other}`"), Some("use \"allow\" or \"refuse\"".into()));
            Permit::Refuse
        }
    }
}

/// A role's `mcp` glob naming a server that does not exist is almost certainly a typo.
pub(super) fn check_role(mcp: &McpPolicy, file: usize, role: &str, globs: &[String], problems: &mut Problems) {
    for (i, g) in globs.iter().enumerate() {
        let server = g.split('/').next().unwrap_or("");
        let ok = g.contains('/') && (server.contains('*') || mcp.servers.contains_key(server));
        if !ok {
            problems.add(
                file,
                path(["roles".into(), role.into(), "mcp".into(), i.into()]),
                format!("`{g}` does not name a declared MCP server"),
                Some(format!(
                    "write SERVER/TOOL globs, e.g. \"srv/*\"; servers declared: {}",
                    mcp.servers.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            );
        }
    }
}

/// Compiles the MCP sections of the main policy file.
pub(super) fn compile(
    raw: &RawPolicy,
    base: &Path,
    circuit: &super::circuit::Global,
    problems: &mut Problems,
) -> McpPolicy {
    let mut allowed_origins = Vec::new();
    for (i, o) in raw.mcp.allowed_origins.iter().enumerate() {
        match o.parse::<http::Uri>() {
            Ok(u) if u.scheme().is_some() && u.host().is_some() && matches!(u.path(), "" | "/") => {
                allowed_origins.push(o.trim_end_matches('/').to_ascii_lowercase())
            }
            _ => problems.add(
                0,
                path(["mcp".into(), "allowed_origins".into(), i.into()]),
                format!("`{o}` is not an origin"),
                Some("write scheme://host[:port], e.g. \"http://localhost:6274\"".into()),
            ),
        }
    }
    let mut servers = BTreeMap::new();
    for (name, s) in &raw.mcp_servers {
        let at = |k: &str| path(["mcp_servers".into(), name.clone().into(), k.into()]);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            problems.add(
                0,
                path(["mcp_servers".into(), name.clone().into()]),
                format!("server name `{name}` must be letters, digits, `-` or `_` (it is the path in /mcp/<server>)"),
                None,
            );
            continue;
        }
        let url = match s.url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
            _ => {
                problems.add(
                    0,
                    at("url"),
                    format!("`{}` is not an http(s) URL", s.url),
                    Some("the server's Streamable HTTP endpoint, e.g. http://127.0.0.1:3001/mcp".into()),
                );
                continue;
            }
        };
        let credential_source = match (&s.credential_env, &s.credential_file) {
            (Some(_), Some(_)) => {
                problems.add(0, at("credential_env"), "set credential_env or credential_file, not both", None);
                None
            }
            (Some(e), None) => Some(TokenSource::Env(e.clone())),
            (None, Some(f)) => Some(TokenSource::File(resolve_path(base, f))),
            (None, None) => None,
        };
        let credential = super::Credential::from_source(credential_source);
        let credential_header = match s.credential_header.as_deref().unwrap_or("authorization").parse::<HeaderName>() {
            Ok(h) => h,
            Err(_) => {
                problems.add(0, at("credential_header"), "not a valid header name", None);
                http::header::AUTHORIZATION
            }
        };
        let extra_ca = s.extra_ca.as_deref().map(|p| resolve_path(base, p));
        if let Some(ca) = &extra_ca {
            if let Err(e) = super::tls::read_ca(ca) {
                problems.add(0, at("extra_ca"), e, Some("name a PEM file with one or more CERTIFICATE blocks".into()));
            }
        }
        let description_injection = match s.description_injection.as_deref() {
            None | Some("withhold") => PoisonAction::Withhold,
            Some("flag") => PoisonAction::Flag,
            Some(other) => {
                problems.add(
                    0,
                    at("description_injection"),
                    format!("unknown value `{other}`"),
                    Some("use \"withhold\" or \"flag\"".into()),
                );
                PoisonAction::Withhold
            }
        };
        let mut pins = BTreeMap::new();
        for (tool, hash) in &s.pins {
            let mut digest = [0u8; 32];
            if hash.len() == 64 && hex::decode_to_slice(hash, &mut digest).is_ok() {
                pins.insert(tool.clone(), digest);
            } else {
                problems.add(
                    0,
                    path(["mcp_servers".into(), name.clone().into(), "pins".into(), tool.clone().into()]),
                    format!("pin for `{tool}` must be 64 hex digits (SHA-256)"),
                    Some("copy the hash from `firebreak admin state` (tool_pins) after reviewing the tool".into()),
                );
            }
        }
        let mut tools = BTreeMap::new();
        for (tool, t) in &s.tools {
            let at = path(["mcp_servers".into(), name.clone().into(), "tools".into(), tool.clone().into()]);
            let args = compile_args(&t.args, 0, &at, problems);
            tools.insert(tool.clone(), McpToolInfo { side_effects: t.side_effects, args });
        }
        servers.insert(
            name.clone(),
            Arc::new(McpServer {
                name: name.clone(),
                url,
                credential,
                credential_header,
                extra_ca,
                sampling: permit(s.sampling.as_deref(), 0, at("sampling"), problems),
                elicitation: permit(s.elicitation.as_deref(), 0, at("elicitation"), problems),
                description_injection,
                pins,
                tools,
                circuit: super::circuit::target(
                    circuit,
                    s.circuit.as_ref(),
                    0,
                    &path(["mcp_servers".into(), name.clone().into(), "circuit".into()]),
                    problems,
                ),
            }),
        );
    }
    McpPolicy { allowed_origins, servers }
}
