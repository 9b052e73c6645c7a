//! The policy file exactly as written: serde structs with `deny_unknown_fields`, no meaning attached.
//!
//! Step one of three (raw → [`validate`](super::validate) → [`compile`](super::compile)). Nothing here
//! is trusted; every value is checked in `validate`, which reports all problems at once.

// Field meanings are documented once, in policies/example.toml, which `check` points to.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole policy document.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Other policy files merged into this one (paths relative to this file).
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub admin: RawAdmin,
    /// Named admin identities with roles.
    #[serde(default)]
    pub admins: Vec<super::admins::RawAdminIdentity>,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    /// Circuit breakers for upstreams and MCP servers (absent: off).
    pub circuit: Option<super::circuit::RawCircuit>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    pub tools: BTreeMap<String, RawTool>,
    /// Per tenant: identifiers that only its data carries (cross-tenant leakage detection).
    #[serde(default)]
    pub tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    pub levels: BTreeMap<String, RawLevel>,
    #[serde(default)]
    pub safe_mode: RawSafeMode,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub redaction: RawRedaction,
    /// Managed system prompts by id (`<id>_backup` is the backup of `<id>`).
    #[serde(default)]
    pub prompts: BTreeMap<String, super::prompts::RawManagedPrompt>,
    /// Absent: denylist mode (public hosts allowed; private, loopback, link-local and metadata denied).
    pub egress: Option<crate::inspect::egress::EgressConfig>,
    #[serde(default)]
    pub injection: crate::inspect::injection::InjectionConfig,
    #[serde(default)]
    pub mcp: RawMcp,
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, RawMcpServer>,
    #[serde(default)]
    pub incidents: RawIncidents,
    /// Detection triggers by name (overrides of the built-in defaults).
    #[serde(default)]
    pub triggers: BTreeMap<String, RawTrigger>,
    /// Containment plans by name (`sev1`..`sev4` override the defaults).
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    /// Evidence capture around incidents (off by default).
    pub forensics: Option<super::forensics::RawForensics>,
    /// `[fleet]`: fleet mode (absent: single-node).
    pub fleet: Option<super::fleet::RawFleet>,
    /// Alert sinks and anomaly settings.
    #[serde(default)]
    pub alerts: super::alerts::RawAlerts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidents {
    /// false: monitor mode — incidents open, but no plan runs automatically.
    pub auto_contain: Option<bool>,
    /// Distinct tenants whose events must fire the same trigger within its window before an
    /// automatic plan's gateway-wide steps run (default 3, at least 2).
    pub corroboration: Option<u32>,
    /// A gateway canary (a secret only the gateway knows) in output corroborates by itself
    /// (default true).
    pub canary_corroborates: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub enabled: Option<bool>,
    pub threshold: Option<u64>,
    pub window: Option<String>,
    pub severity: Option<String>,
    pub auto: Option<bool>,
    pub plan: Option<String>,
    /// Opt-in: one principal's event runs the plan's gateway-wide steps too (`firebreak check` warns).
    pub global_without_corroboration: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    /// Action templates: switch actions whose strings may name `{user}`, `{tenant}`, `{session}`, `{key_id}`.
    #[serde(default)]
    pub actions: Vec<serde_json::Value>,
    /// Record that provider credentials must be rotated (an operator runs `admin rotate-all`).
    #[serde(default)]
    pub rotate_credentials: bool,
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// Browser origins allowed to call `/mcp/*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpServer {
    pub url: String,
    pub credential_env: Option<String>,
    pub credential_file: Option<String>,
    pub credential_header: Option<String>,
    pub extra_ca: Option<String>,
    pub sampling: Option<String>,
    pub elicitation: Option<String>,
    pub description_injection: Option<String>,
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
    #[serde(default)]
    pub tools: BTreeMap<String, RawMcpTool>,
    /// This server's circuit breaker (overrides `[circuit]`).
    pub circuit: Option<super::circuit::RawCircuit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpTool {
    pub side_effects: Option<bool>,
    #[serde(default)]
    pub args: BTreeMap<String, RawArg>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedaction {
    /// Replacement text; `<rule-id>` is replaced by the rule's id.
    pub replacement: Option<String>,
    /// Built-in rules switched off.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Built-in rules that are off by default, switched on.
    #[serde(default)]
    pub enabled: Vec<String>,
    #[serde(default)]
    pub custom: Vec<RawCustomRule>,
    #[serde(default)]
    pub canaries: Vec<RawCanary>,
    #[serde(default)]
    pub prompts: Vec<RawPrompt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrompt {
    pub id: String,
    pub text: Option<String>,
    pub text_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomRule {
    pub id: String,
    pub pattern: String,
    pub keywords: Vec<String>,
    pub max_len: Option<i64>,
    pub group: Option<i64>,
    pub category: Option<String>,
    pub severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub id: String,
    pub value: Option<String>,
    pub value_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub proxy: Option<String>,
    pub admin: Option<String>,
    /// CIDR blocks of the proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_tls: Option<super::tls::RawListenerTls>,
    pub admin_tls: Option<super::tls::RawListenerTls>,
    pub tls_watch_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    /// The two-person rule.
    pub require_second: Option<super::admins::RawRequireSecond>,
    /// Failed admin authentications from one address before it is locked out.
    pub max_auth_failures: Option<i64>,
    /// The window those failures are counted in, and the lockout lasts to its end.
    pub auth_failure_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub state_file: Option<String>,
    pub audit_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_request_body_bytes: Option<i64>,
    pub max_response_body_bytes: Option<i64>,
    pub header_read_timeout_ms: Option<i64>,
    pub upstream_connect_timeout_ms: Option<i64>,
    pub upstream_timeout_ms: Option<i64>,
    pub stream_idle_timeout_ms: Option<i64>,
    pub shutdown_drain_ms: Option<i64>,
    pub max_concurrent_requests: Option<i64>,
    pub first_byte_timeout_ms: Option<i64>,
    pub idle_timeout_ms: Option<i64>,
    pub h2_keep_alive_interval_ms: Option<i64>,
    pub h2_keep_alive_timeout_ms: Option<i64>,
    pub h2_max_concurrent_streams: Option<i64>,
    pub max_connections: Option<i64>,
    pub admin_max_connections: Option<i64>,
    pub request_body_timeout_ms: Option<i64>,
    pub min_request_body_bytes_per_sec: Option<i64>,
    pub max_buffered_request_bytes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub kind: String,
    pub base_url: Option<String>,
    pub credential_env: Option<String>,
    pub credential_file: Option<String>,
    pub extra_ca: Option<String>,
    /// Scripted upstreams only: canned replies, first match wins.
    #[serde(default)]
    pub replies: Vec<RawReply>,
    /// Scripted upstreams only: characters per streamed chunk.
    pub chunk_chars: Option<i64>,
    /// Scripted upstreams only: delay between streamed chunks.
    pub chunk_delay_ms: Option<i64>,
    /// This upstream's circuit breaker (overrides `[circuit]`).
    pub circuit: Option<super::circuit::RawCircuit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReply {
    /// The reply is chosen when the last user message contains this text (absent: matches anything).
    #[serde(rename = "when_contains")]
    pub when_contains: Option<String>,
    pub text: String,
    /// Scripted tool call the "model" makes after the text (chat completions and messages).
    pub tool_call: Option<RawToolCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolCall {
    pub name: String,
    /// JSON document as text.
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub api: String,
    pub upstream: String,
    #[serde(default)]
    pub models: Vec<String>,
    /// Managed prompt injected into requests taking this route (a key's own binding wins).
    pub prompt: Option<String>,
    /// Upstream (same API) that takes the route's requests while its upstream's circuit is open.
    pub fallback: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    pub sha256: String,
    pub tenant: String,
    pub user: String,
    pub role: String,
    pub expires: Option<String>,
    /// Managed prompt injected into this key's requests.
    pub prompt: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    /// Model tools this role may use (names, `*` wildcards). Absent: every tool.
    pub tools: Option<Vec<String>>,
    /// Models this role may request (names, `*` wildcards). Absent: every model.
    pub models: Option<Vec<String>>,
    /// What to do with a request offering tools the role may not use: "strip" (default) or "refuse".
    pub disallowed_tools: Option<String>,
    /// MCP `server/tool` names this role may use (`*` wildcards). Absent: no MCP access.
    pub mcp: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// Literal, case-insensitive identifiers of this tenant's data (at least 4 bytes each).
    #[serde(default)]
    pub identifiers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    #[serde(default)]
    pub side_effects: bool,
    /// The tool returns data (counts toward bulk data extraction). Absent: true when it has no side
    /// effects.
    pub data: Option<bool>,
    /// Constraints per argument name.
    #[serde(default)]
    pub args: BTreeMap<String, RawArg>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArg {
    /// The only values allowed.
    pub values: Option<Vec<String>>,
    /// A regex the whole value must match.
    pub pattern: Option<String>,
    /// Longest value, in characters.
    pub max_len: Option<i64>,
    /// The argument must be present.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevel {
    pub requests_per_minute: Option<i64>,
    pub max_in_flight: Option<i64>,
    pub tools: Option<String>,
    pub model: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafeMode {
    pub reply: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Keep the (redacted) request payload in the audit record of a blocked request.
    pub store_blocked_payloads: Option<bool>,
    /// What AI and MCP traffic gets while the trail cannot be written: "fail_closed" (default, 503)
    /// or "fail_open" (served unaudited, records held in memory).
    pub on_failure: Option<String>,
    /// The HMAC key of the chain (hex or base64, at least 32 bytes): an environment variable…
    pub key_env: Option<String>,
    /// …or a file. Neither: `<audit_file>.key`, generated on first start.
    pub key_file: Option<String>,
    /// The key the trail was written with before a rotation (read at start to sign the rotation).
    pub previous_key_env: Option<String>,
    /// The same, from a file.
    pub previous_key_file: Option<String>,
}
