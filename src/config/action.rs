//! The switch actions' language: what a security lead (or an incident plan of the policy) can flip.
//! The policy's `[plans]` are written in it and checked when the policy is compiled; the switch
//! state (`state::action`) validates and applies them.

use serde::{Deserialize, Serialize};

/// One action of a batch. JSON: `{"action":"block_user","user":"alice","ttl":"1h"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Set the degradation level.
    SetLevel {
        /// normal, elevated, critical or lockdown.
        level: String,
    },
    /// Turn safe mode on or off.
    SafeMode {
        /// On or off.
        enabled: bool,
    },
    /// Block a user (optionally for a while).
    BlockUser {
        /// User id.
        user: String,
        /// How long, e.g. `30m`, `1h`, `2d`.
        #[serde(default)]
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
        /// How long.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Lower one user's request rate below the level's (an incident plan's "rate-limit the user").
    LimitUser {
        /// User id.
        user: String,
        /// Requests per minute allowed to this user (the lower of this and the level's applies).
        requests_per_minute: u32,
        /// How long.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Lift a per-user rate limit.
    UnlimitUser {
        /// User id.
        user: String,
    },
    /// Lift a tenant block.
    UnblockTenant {
        /// Tenant id.
        tenant: String,
    },
    /// Revoke a virtual key by its id.
    RevokeKey {
        /// Key id from the policy.
        key_id: String,
    },
    /// End a session: its requests are refused and its streams cut.
    TerminateSession {
        /// Session id (`x-session-id` or `Mcp-Session-Id`).
        session: String,
        /// How long the session stays refused.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Disable a model tool everywhere.
    DisableTool {
        /// Tool name.
        tool: String,
        /// How long.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Re-enable a tool.
    EnableTool {
        /// Tool name.
        tool: String,
    },
    /// Disable an endpoint (`chat_completions`, `responses`, `embeddings`, `models`, `messages`).
    DisableEndpoint {
        /// Endpoint name or path.
        endpoint: String,
        /// How long.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Re-enable an endpoint.
    EnableEndpoint {
        /// Endpoint name or path.
        endpoint: String,
    },
    /// Block egress to a host or domain (and its subdomains), in tool-call arguments and output links.
    BlockEgress {
        /// Host name, domain or IP address.
        host: String,
        /// How long.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Lift an egress block.
    UnblockEgress {
        /// Host name, domain or IP address.
        host: String,
    },
    /// Isolate an MCP server: no traffic reaches it and its open streams end.
    IsolateServer {
        /// Server name from `[mcp_servers.*]`.
        server: String,
        /// How long.
        #[serde(default)]
        ttl: Option<String>,
    },
    /// Lift an isolation.
    RestoreServer {
        /// Server name.
        server: String,
    },
    /// Reject every new or changed tool definition of an MCP server.
    FreezeTools {
        /// Server name.
        server: String,
    },
    /// Accept new tool definitions again (trust on first use).
    UnfreezeTools {
        /// Server name.
        server: String,
    },
    /// Trust the pending definition of an MCP tool — only if it is still the one reviewed.
    ApproveTool {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// SHA-256 (hex) of the definition the operator reviewed (`admin pending-tools`); refused
        /// (409) when the pending definition is another one.
        hash: String,
    },
    /// Drop the pending definition of an MCP tool (keep the trusted one) — only if it is still the
    /// one reviewed.
    RejectTool {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// SHA-256 (hex) of the pending definition the operator reviewed.
        hash: String,
    },
    /// Recorded by the gateway when it sees an MCP tool definition: the first one is trusted (unless
    /// the server is frozen), a different one is kept pending for `approve_tool`.
    ObserveTool {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// SHA-256 (hex) of the canonical definition.
        hash: String,
        /// Set when the definition must not be trusted on first use (the rule that withheld it, e.g.
        /// `mcp.tool_poisoned`): it waits for `approve_tool` like a changed one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suspect: Option<String>,
        /// The definition itself (its hashed fields): kept in the pin so an operator reviews what
        /// the hash stands for. Set by the gateway only; never in an admin batch or the audit trail.
        #[serde(skip)]
        definition: Option<serde_json::Value>,
    },
    /// Emergency rotation of a managed prompt: the backup (or the fallback) goes live, the
    /// compromised version is invalidated, and a new canary is issued; the old canary stays detected.
    RotatePrompt {
        /// Prompt id from `[prompts.*]`.
        prompt: String,
    },
    /// A new canary for a managed prompt (the text stays); the old canary stays detected.
    RotateCanary {
        /// Prompt id.
        prompt: String,
    },
    /// The primary text goes live again, with a new canary; refused while that text is the one
    /// invalidated by a rotation (change it in the policy and reload first).
    RestorePrompt {
        /// Prompt id.
        prompt: String,
    },
    /// Issued by the gateway for a managed prompt that has no canary yet (a new prompt in the
    /// policy); does nothing when it has one.
    IssueCanary {
        /// Prompt id.
        prompt: String,
    },
}

/// Whether a switch action named `action` (`block_user`, …) acts on one principal only — the user,
/// tenant, key or session it names — rather than on everyone (safe mode, levels, tools, endpoints,
/// egress, MCP servers, prompts). Automatic containment runs only these for one principal's events.
pub fn principal_scoped(action: &str) -> bool {
    matches!(
        action,
        "block_user"
            | "unblock_user"
            | "block_tenant"
            | "unblock_tenant"
            | "revoke_key"
            | "terminate_session"
            | "limit_user"
            | "unlimit_user"
    )
}

impl Action {
    /// [`principal_scoped`] for this action.
    pub fn is_principal_scoped(&self) -> bool {
        matches!(
            self,
            Action::BlockUser { .. }
                | Action::UnblockUser { .. }
                | Action::BlockTenant { .. }
                | Action::UnblockTenant { .. }
                | Action::RevokeKey { .. }
                | Action::TerminateSession { .. }
                | Action::LimitUser { .. }
                | Action::UnlimitUser { .. }
        )
    }

    /// Whether applying it issues a canary (the scanner must learn it before the snapshot is seen).
    pub fn issues_canary(&self) -> bool {
        matches!(
            self,
            Action::RotatePrompt { .. }
                | Action::RotateCanary { .. }
                | Action::RestorePrompt { .. }
                | Action::IssueCanary { .. }
        )
    }
}
