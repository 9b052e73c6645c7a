//! The policy: loaded from TOML, validated with every problem located, compiled into an immutable
//! [`Policy`] that the request path reads through one `Arc`.
//!
//! raw.rs (serde) → validate.rs (problems with file:line) → compile.rs (the runtime object). A
//! `Policy` cannot exist unvalidated: the only way to build one is [`load`] / [`load_str`].

pub mod action;
pub mod admins;
pub mod alerts;
pub mod circuit;
mod compile;
pub mod fleet;
pub mod forensics;
pub mod glob;
pub mod incidents;
mod inspection;
pub mod mcp;
pub mod prompts;
pub(crate) mod raw;
pub mod tls;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use glob::{Glob, GlobSet};
pub use validate::Located;

use crate::protocol::Api;

/// The demo policy, embedded so `firebreak serve` runs with no file and no provider key.
pub const DEMO_POLICY: &str = include_str!("../../policies/demo.toml");
/// How the embedded demo policy is named in messages.
pub const DEMO_NAME: &str = "<embedded demo policy>";

/// A policy that failed validation: every problem, located.
#[derive(Debug, thiserror::Error)]
#[error("policy has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct PolicyError(pub Vec<Located>);

/// Loads, validates and compiles the policy at `path` (and its includes).
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    compile::load_file(path)
}

/// Loads a policy from text; `base` resolves relative paths (includes, CA files, credential files).
pub fn load_str(name: &str, text: &str, base: &Path) -> Result<Policy, PolicyError> {
    compile::load_text(PathBuf::from(name), text.to_owned(), base)
}

/// A secret value (admin token, provider credential). Never printed: `Debug` shows `<redacted>`.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The compiled policy. Cloning is shallow where it matters (tables behind `Arc`s); a canary
/// rotation clones it to swap in a scanner that knows the new canary.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it was loaded from.
    pub source: PathBuf,
    /// Listener addresses (changing them needs a restart).
    pub listen: Listen,
    /// Where the admin token comes from (`env:NAME` or `file:PATH`); the token is read at start.
    pub admin_token_source: Option<TokenSource>,
    /// `[[admins]]` and `[admin.require_second]`.
    pub admins: Arc<admins::Admins>,
    /// State and audit files.
    pub storage: Storage,
    /// Size, time and concurrency limits.
    pub limits: Limits,
    /// Logging and OpenTelemetry.
    pub telemetry: Telemetry,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// Routes, first match wins, per API.
    pub routes: Vec<Route>,
    /// Virtual keys by SHA-256 of the key.
    pub keys: HashMap<[u8; 32], Arc<KeyEntry>>,
    /// Key ids declared (for `revoke_key` validation).
    pub key_ids: BTreeMap<String, Arc<KeyEntry>>,
    /// Roles by name.
    pub roles: HashMap<String, Role>,
    /// Known model tools and their traits.
    pub tools: HashMap<String, ToolInfo>,
    /// Identifiers of each tenant's data, detected in output delivered to another tenant.
    pub tenants: Arc<crate::inspect::tenants::TenantIds>,
    /// MCP servers and settings.
    pub mcp: Arc<mcp::McpPolicy>,
    /// Settings per degradation level.
    pub levels: Levels,
    /// The pre-approved reply served in safe mode.
    pub safe_mode_reply: String,
    /// What the audit trail keeps.
    pub audit: AuditSettings,
    /// The redaction scanner (built-in catalog, custom rules, canaries), built once per policy.
    pub scanner: Arc<crate::inspect::Scanner>,
    /// Shingles of the system prompts whose fragments are counted in output.
    pub prompts: Arc<crate::inspect::fragments::PromptShingles>,
    /// Managed system prompts by id (texts; the live version and canaries are switch state).
    pub managed_prompts: Arc<BTreeMap<String, prompts::ManagedPrompt>>,
    /// The scanner before managed-prompt canaries were added (canary rotations rebuild from it).
    pub base_scanner: Arc<crate::inspect::Scanner>,
    /// Egress rules for tool-call arguments and links in model output.
    pub egress: Arc<crate::inspect::egress::EgressRules>,
    /// Prompt-injection signatures for user input and tool results.
    pub injection: Arc<crate::inspect::injection::Signatures>,
    /// Detection triggers and containment plans.
    pub incidents: Arc<incidents::IncidentPolicy>,
    /// Evidence capture around incidents; `None` when off (the default).
    pub forensics: Option<Arc<forensics::ForensicsSettings>>,
    /// Fleet mode (`[fleet]`; read at start, a reload keeps the settings it started with).
    pub fleet: Option<Arc<fleet::FleetSettings>>,
    /// SHA-256 (hex) over the policy's files as loaded (each file's path and text, in load order).
    pub sha256: String,
    /// SHA-256 (hex) over the policy files' texts only, in load order (not their paths): equal on
    /// replicas that load the same policy from different places; fleet mode compares it.
    pub content_sha256: String,
    /// Alert sinks and anomaly settings.
    pub alerts: Arc<alerts::AlertsPolicy>,
}

/// A provider or MCP-server credential: where it comes from, and the value in force. Rotation
/// re-reads the source and swaps the value in one pointer store: requests already sent keep the old
/// one, the next request uses the new one.
#[derive(Debug, Default)]
pub struct Credential {
    source: Option<TokenSource>,
    current: arc_swap::ArcSwapOption<Secret>,
}

impl Credential {
    /// A credential read from `source` now (a missing value is not an error until used).
    pub fn from_source(source: Option<TokenSource>) -> Credential {
        let current = source.as_ref().and_then(|s| s.read().ok()).map(Arc::new);
        Credential { source, current: arc_swap::ArcSwapOption::new(current) }
    }

    /// Where it is read from (None: the upstream takes no credential).
    pub fn source(&self) -> Option<&TokenSource> {
        self.source.as_ref()
    }

    /// The value in force.
    pub fn current(&self) -> Option<Arc<Secret>> {
        self.current.load_full()
    }

    /// Re-reads the source and swaps the new value in. On error the old value stays in force.
    pub fn rotate(&self) -> Result<(), String> {
        let source = self.source.as_ref().ok_or("no credential_env or credential_file is configured")?;
        let next = source.read()?;
        self.current.store(Some(Arc::new(next)));
        Ok(())
    }
}

/// Where a secret is read from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing whitespace trimmed).
    File(PathBuf),
}

impl TokenSource {
    /// Reads the secret now.
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            TokenSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                _ => Err(format!("environment variable {name} is not set or empty")),
            },
            TokenSource::File(p) => match std::fs::read_to_string(p) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => Err(format!("{} is empty", p.display())),
                Err(e) => Err(format!("cannot read {}: {e}", p.display())),
            },
        }
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env(n) => write!(f, "env:{n}"),
            TokenSource::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// What the audit trail keeps beyond decisions, its key, and what happens when it cannot be written.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// The audit record of a blocked request carries its payload, with every secret the scanner
    /// finds redacted (`firebreak replay --from-audit` turns those into replay cases). Default off.
    pub store_blocked_payloads: bool,
    /// AI and MCP traffic while the trail cannot be written.
    pub on_failure: OnAuditFailure,
    /// Where the chain's HMAC key is read from at start (`None`: `<audit_file>.key`, generated).
    pub key: Option<TokenSource>,
    /// The key before a rotation: signs the `key_rotated` record that hands the chain over.
    pub previous_key: Option<TokenSource>,
}

/// What AI and MCP traffic gets while the audit trail cannot be written. Either way `/readyz`
/// fails, `firebreak_audit_writable` is 0, the failure is logged as an error, and admin changes are
/// refused (a switch is never acknowledged without its durable record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnAuditFailure {
    /// Refuse every request with 503 (default): nothing is served that the trail does not hold.
    #[default]
    FailClosed,
    /// Serve on; records are held in memory (bounded) and written once the disk recovers.
    FailOpen,
}

/// Listener addresses.
#[derive(Debug, Clone)]
pub struct Listen {
    /// AI traffic.
    pub proxy: SocketAddr,
    /// Admin API and metrics.
    pub admin: SocketAddr,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` name the client (empty: none is believed).
    pub trusted_proxies: Vec<crate::inspect::egress::Cidr>,
    /// TLS on the proxy listener (none: plain HTTP).
    pub proxy_tls: Option<tls::ListenerTls>,
    /// TLS (and optionally mutual TLS) on the admin listener (none: plain HTTP).
    pub admin_tls: Option<tls::ListenerTls>,
    /// How often the TLS files are checked for changes; `None`: only on SIGHUP / `admin reload`.
    pub tls_watch: Option<Duration>,
}

/// Files the gateway writes.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The switch snapshot.
    pub state_file: PathBuf,
    /// The audit trail (JSONL).
    pub audit_file: PathBuf,
}

/// Limits with safe defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_request_body: usize,
    /// Largest non-streamed response body, and largest single SSE event.
    pub max_response_body: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Time to connect to an upstream.
    pub upstream_connect_timeout: Duration,
    /// Time until the upstream's response headers (and, for JSON, its whole body).
    pub upstream_timeout: Duration,
    /// Longest silence allowed inside a stream.
    pub stream_idle_timeout: Duration,
    /// On shutdown, how long open requests and streams may finish before the streams still open
    /// are ended with a terminal error event.
    pub shutdown_drain: Duration,
    /// Requests served at once; more wait for none and get 503.
    pub max_concurrent_requests: usize,
    /// Time a new connection has to send its first byte before it is closed.
    pub first_byte_timeout: Duration,
    /// Time a connection (HTTP/1.1 keep-alive or HTTP/2) may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings.
    pub h2_keep_alive_interval: Duration,
    /// Time an HTTP/2 ping may stay unanswered before the connection is closed.
    pub h2_keep_alive_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Open connections on the proxy listener; at the cap, accepting pauses until one closes.
    pub max_connections: usize,
    /// Open connections on the admin listener (its own cap, so the proxy's load never reaches it).
    pub admin_max_connections: usize,
    /// Time a client has to send a whole request body.
    pub request_body_timeout: Duration,
    /// Slowest average upload rate accepted for a request body (bytes/s), after its first second.
    pub min_request_body_rate: u64,
    /// Request-body bytes buffered at once across all requests; over it, 503 with `Retry-After`.
    pub max_buffered_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body: 8 << 20,
            max_response_body: 16 << 20,
            header_read_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(300),
            stream_idle_timeout: Duration::from_secs(120),
            shutdown_drain: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(20),
            h2_max_concurrent_streams: 100,
            max_connections: 10_000,
            admin_max_connections: 64,
            request_body_timeout: Duration::from_secs(30),
            min_request_body_rate: 1024,
            max_buffered_request_bytes: 256 << 20,
        }
    }
}

/// Logging and tracing.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// JSON log lines instead of text.
    pub json_logs: bool,
    /// `tracing` filter directive (e.g. `info`, `firebreak=debug`).
    pub log_level: Option<String>,
    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`); export is off when absent.
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute.
    pub service_name: String,
}

/// What kind of upstream an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// An OpenAI-compatible HTTP API; credential sent as `Authorization: Bearer`.
    OpenAi,
    /// The Anthropic HTTP API; credential sent as `x-api-key`.
    Anthropic,
    /// In-process canned replies in both wire formats; never touches the network.
    Scripted,
}

/// An upstream provider.
#[derive(Debug)]
pub struct Upstream {
    /// Its name in the policy.
    pub name: String,
    /// Its kind.
    pub kind: UpstreamKind,
    /// Base URL (HTTP kinds), e.g. `https://api.openai.com`; paths are appended to it.
    pub base_url: Option<http::Uri>,
    /// Its credential (read when the policy was compiled; rotated in place).
    pub credential: Credential,
    /// Extra CA certificate (PEM) trusted for this upstream, in addition to the platform roots.
    pub extra_ca: Option<PathBuf>,
    /// Scripted replies.
    pub replies: Vec<Reply>,
    /// Scripted streaming: characters per chunk.
    pub chunk_chars: usize,
    /// Scripted streaming: delay between chunks.
    pub chunk_delay: Duration,
    /// Its circuit breaker's limits (None: no breaker).
    pub circuit: Option<circuit::CircuitSettings>,
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Chosen when the last user message contains this (None: always).
    pub when_contains: Option<String>,
    /// The assistant's text.
    pub text: String,
    /// A tool call made after the text: (name, JSON arguments).
    pub tool_call: Option<(String, String)>,
}

/// A route from an API (and model pattern) to an upstream.
#[derive(Debug, Clone)]
pub struct Route {
    /// The API the client speaks.
    pub api: Api,
    /// Models this route takes (empty: any).
    pub models: GlobSet,
    /// Whether `models` is empty.
    pub any_model: bool,
    /// The upstream's name.
    pub upstream: String,
    /// Managed prompt bound to this route.
    pub prompt: Option<Arc<str>>,
    /// Upstream taking the route's requests while its upstream's circuit is open.
    pub fallback: Option<String>,
}

/// A virtual key's principal.
#[derive(Debug)]
pub struct KeyEntry {
    /// Key id (safe to log and audit).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// User (unique across tenants).
    pub user: String,
    /// Role name.
    pub role: String,
    /// Expiry.
    pub expires: Option<SystemTime>,
    /// Managed prompt bound to this key (wins over the route's).
    pub prompt: Option<Arc<str>>,
}

/// A role's permissions.
#[derive(Debug, Clone, Default)]
pub struct Role {
    /// Allowed model tools (None: all).
    pub tools: Option<GlobSet>,
    /// Allowed models (None: all).
    pub models: Option<GlobSet>,
    /// Refuse (instead of strip) requests offering tools the role may not use.
    pub refuse_disallowed_tools: bool,
    /// MCP `server/tool` names this role may use, and the servers they name (None: no MCP access).
    pub mcp: Option<(GlobSet, GlobSet)>,
}

/// What the policy knows of a model tool.
#[derive(Debug, Clone, Default)]
pub struct ToolInfo {
    /// Whether calling it changes something outside the conversation.
    pub side_effects: bool,
    /// Whether it returns data: its calls count toward `bulk_data_extraction` (`data`, or by
    /// default: no side effects).
    pub data: bool,
    /// Constraints on its arguments, by argument name.
    pub args: BTreeMap<String, ArgRule>,
}

/// A constraint on one tool argument.
#[derive(Debug, Clone, Default)]
pub struct ArgRule {
    /// The only values allowed.
    pub values: Option<Vec<String>>,
    /// A regex the whole value must match (anchored when compiled).
    pub pattern: Option<regex::Regex>,
    /// Longest value, in characters.
    pub max_len: Option<usize>,
    /// The argument must be present.
    pub required: bool,
}

impl ArgRule {
    /// Why `value` breaks the rule (naming the argument, never echoing the value).
    pub fn violation(&self, arg: &str, value: Option<&serde_json::Value>) -> Option<String> {
        let Some(value) = value else {
            return self.required.then(|| format!("argument `{arg}` is required"));
        };
        let text = match value {
            serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        if self.max_len.is_some_and(|m| text.chars().count() > m) {
            return Some(format!("argument `{arg}` is longer than allowed"));
        }
        if self.values.as_ref().is_some_and(|v| !v.iter().any(|x| *x == text)) {
            return Some(format!("argument `{arg}` has a value that is not allowed"));
        }
        if self.pattern.as_ref().is_some_and(|p| !p.is_match(&text)) {
            return Some(format!("argument `{arg}` does not match its allowed pattern"));
        }
        None
    }
}

/// A degradation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// All features.
    Normal,
    /// Reduced: no tools with side effects.
    Elevated,
    /// Minimal: no tools, constrained model.
    Critical,
    /// Every AI request refused.
    Lockdown,
}

impl Level {
    /// All levels, in order.
    pub const ALL: [Level; 4] = [Level::Normal, Level::Elevated, Level::Critical, Level::Lockdown];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Elevated => "elevated",
            Level::Critical => "critical",
            Level::Lockdown => "lockdown",
        }
    }

    /// Parses a level name.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which tools a level keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolsMode {
    /// Every tool the role allows.
    All,
    /// Only tools known to have no side effects.
    NoSideEffects,
    /// None.
    None,
}

/// Settings of one level.
#[derive(Debug, Clone)]
pub struct LevelSettings {
    /// Requests per minute per user (0 refuses everything).
    pub requests_per_minute: u32,
    /// Requests (open streams included) one user may have in flight at once.
    pub max_in_flight: u32,
    /// Tools kept.
    pub tools: ToolsMode,
    /// Model that replaces the requested one.
    pub model: Option<String>,
    /// Message returned when refused (lockdown).
    pub message: String,
}

/// Settings of all four levels.
#[derive(Debug, Clone)]
pub struct Levels([LevelSettings; 4]);

impl Levels {
    /// The settings of `level`.
    pub fn get(&self, level: Level) -> &LevelSettings {
        &self.0[level.index()]
    }
}

impl Policy {
    /// The upstream for a request of `api` asking for `model`.
    pub fn route(&self, api: Api, model: Option<&str>) -> Option<&Arc<Upstream>> {
        self.route_entry(api, model).and_then(|r| self.upstreams.get(&r.upstream))
    }

    /// The route a request of `api` asking for `model` takes.
    pub fn route_entry(&self, api: Api, model: Option<&str>) -> Option<&Route> {
        self.routes.iter().find(|r| r.api == api && (r.any_model || model.is_some_and(|m| r.models.matches(m))))
    }

    /// A managed prompt by id, or what to tell an operator who named an unknown one.
    pub fn managed_prompt(&self, id: &str) -> Result<&prompts::ManagedPrompt, String> {
        self.managed_prompts.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.managed_prompts.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("unknown prompt `{id}`: the policy declares no [prompts]")
            } else {
                format!("unknown prompt `{id}`; managed prompts: {}", known.join(", "))
            }
        })
    }

    /// The managed prompt bound to this request: the key's binding, else the route's.
    pub fn prompt_for(&self, key: &KeyEntry, route: Option<&Route>) -> Option<&prompts::ManagedPrompt> {
        let id = key.prompt.as_deref().or_else(|| route.and_then(|r| r.prompt.as_deref()))?;
        self.managed_prompts.get(id)
    }

    /// Whether `tool` may be offered to / called by the model for `role` at `level`
    /// (switches are checked separately).
    pub fn tool_allowed(&self, role: &str, level: Level, tool: &str) -> bool {
        let role_ok = self.roles.get(role).is_some_and(|r| r.tools.as_ref().is_none_or(|g| g.matches(tool)));
        role_ok
            && match self.levels.get(level).tools {
                ToolsMode::All => true,
                // Unknown tools count as having side effects: fail closed.
                ToolsMode::NoSideEffects => self.tools.get(tool).is_some_and(|t| !t.side_effects),
                ToolsMode::None => false,
            }
    }
}
