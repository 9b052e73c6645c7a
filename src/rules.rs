//! Every rule id the gateway writes into decisions, audit records and metrics, typed.
//!
//! A decision names the rule that made it: a fixed id of the gateway ([`Rule`]) or, for the few
//! families whose ids are data ([`RuleId`]), a typed wrapper. The strings are the ones the audit
//! trail, the metrics and the README have always used (`tools.not_allowed`, …); the README's rule
//! table lists exactly [`Rule::ALL`] (a test checks it). What a rule *means* for the incident engine
//! is a method here ([`Rule::is_guardrail`], [`Rule::is_tool_refusal`]), never a prefix test on a
//! string, so a new rule is counted only where it is declared to count.

use std::fmt;

use serde::{Serialize, Serializer};

/// The area a rule belongs to (its id's first segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Nothing refused or changed.
    Allow,
    /// Identity (virtual keys).
    Auth,
    /// The request itself (route, body, method).
    Request,
    /// Concurrency and buffer limits.
    Limits,
    /// The audit trail.
    Audit,
    /// The gateway's own life (shutdown).
    Gateway,
    /// Operator switches.
    Switch,
    /// The degradation level.
    Level,
    /// The caller's role.
    Role,
    /// Tools and tool calls of AI requests.
    Tools,
    /// Egress: URLs, hosts, links.
    Egress,
    /// Prompt injection.
    Injection,
    /// Managed prompts.
    Prompt,
    /// Tenants' identifiers.
    Tenants,
    /// Upstreams (providers).
    Upstream,
    /// The MCP gateway.
    Mcp,
    /// Redaction (MCP answers).
    Redaction,
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $family:ident; )*) => {
        /// A fixed rule id of the gateway.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule {
            $( $(#[$doc])* $variant, )*
        }

        impl Rule {
            /// Every fixed rule, in declaration order.
            pub const ALL: &'static [Rule] = &[$( Rule::$variant, )*];

            /// The id, as written to the audit trail and the metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Rule::$variant => $id, )*
                }
            }

            /// The rule's family.
            pub const fn family(self) -> Family {
                match self {
                    $( Rule::$variant => Family::$family, )*
                }
            }

            /// The rule with this id, if it is a fixed one.
            pub fn parse(id: &str) -> Option<Rule> {
                match id {
                    $( $id => Some(Rule::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

rules! {
    /// Nothing to decide: the request went through as sent.
    Allow = "allow", Allow;

    /// No virtual key presented.
    AuthMissingKey = "auth.missing_key", Auth;
    /// The presented key is not a virtual key of the policy.
    AuthUnknownKey = "auth.unknown_key", Auth;
    /// The key has expired.
    AuthKeyExpired = "auth.key_expired", Auth;

    /// No such route.
    RequestUnknownRoute = "request.unknown_route", Request;
    /// The body exceeds the size limit.
    RequestTooLarge = "request.too_large", Request;
    /// The body is not `application/json`.
    RequestContentType = "request.content_type", Request;
    /// The body is not JSON.
    RequestBadJson = "request.bad_json", Request;
    /// A field the gateway relies on is missing or wrong.
    RequestInvalid = "request.invalid", Request;
    /// The body did not arrive in time.
    RequestBodyTimeout = "request.body_timeout", Request;
    /// An HTTP method the endpoint does not serve.
    RequestMethod = "request.method", Request;

    /// The gateway's concurrency limit.
    LimitsConcurrency = "limits.concurrency", Limits;
    /// The user's share of requests in flight at the current level.
    LimitsUserInFlight = "limits.user_in_flight", Limits;
    /// The budget of buffered request bodies.
    LimitsBufferedBytes = "limits.buffered_bytes", Limits;

    /// The audit trail cannot be written and the policy fails closed.
    AuditUnavailable = "audit.unavailable", Audit;

    /// Shutting down: the drain time is up.
    GatewayShutdown = "gateway.shutdown", Gateway;

    /// Lockdown switch.
    SwitchLockdown = "switch.lockdown", Switch;
    /// Endpoint disabled.
    SwitchEndpointDisabled = "switch.endpoint_disabled", Switch;
    /// Key revoked.
    SwitchKeyRevoked = "switch.key_revoked", Switch;
    /// Tenant blocked.
    SwitchTenantBlocked = "switch.tenant_blocked", Switch;
    /// User blocked.
    SwitchUserBlocked = "switch.user_blocked", Switch;
    /// Session terminated.
    SwitchSessionTerminated = "switch.session_terminated", Switch;
    /// Safe mode answered the request.
    SwitchSafeMode = "switch.safe_mode", Switch;

    /// The level is `lockdown`.
    LevelLockdown = "level.lockdown", Level;
    /// The level's rate limit.
    LevelRateLimit = "level.rate_limit", Level;
    /// The level overrode the model.
    LevelModelOverride = "level.model_override", Level;
    /// A tool the current level does not allow (MCP).
    LevelTools = "level.tools", Level;

    /// The role may not use the model.
    RoleModelNotAllowed = "role.model_not_allowed", Role;

    /// A tool the role (or level, or a switch) does not allow.
    ToolsNotAllowed = "tools.not_allowed", Tools;
    /// Tools removed from the request.
    ToolsStripped = "tools.stripped", Tools;
    /// A tool call's argument breaks its constraint.
    ToolsArgument = "tools.argument", Tools;
    /// A tool call's arguments are not a JSON object.
    ToolsArgumentsInvalid = "tools.arguments_invalid", Tools;
    /// A tool call's arguments exceed the size limit.
    ToolsCallTooLarge = "tools.call_too_large", Tools;
    /// Calls to data tools the client received (incident evidence).
    ToolsDataCall = "tools.data_call", Tools;

    /// A host blocked by an egress switch.
    EgressSwitchBlocked = "egress.switch_blocked", Egress;
    /// A URL scheme the egress policy does not allow.
    EgressScheme = "egress.scheme", Egress;
    /// A URL that cannot be parsed safely.
    EgressUnparseable = "egress.unparseable", Egress;
    /// A cloud metadata endpoint.
    EgressMetadata = "egress.metadata", Egress;
    /// A loopback address.
    EgressLoopback = "egress.loopback", Egress;
    /// A private address.
    EgressPrivateAddress = "egress.private_address", Egress;
    /// A link-local address.
    EgressLinkLocal = "egress.link_local", Egress;
    /// The unspecified address.
    EgressUnspecified = "egress.unspecified", Egress;
    /// A reserved address.
    EgressReserved = "egress.reserved", Egress;
    /// An internal host name.
    EgressInternalName = "egress.internal_name", Egress;
    /// A denied domain.
    EgressDeniedDomain = "egress.denied_domain", Egress;
    /// A denied address range.
    EgressDeniedCidr = "egress.denied_cidr", Egress;
    /// A host outside the allowlist.
    EgressNotAllowlisted = "egress.not_allowlisted", Egress;
    /// A query string longer than allowed.
    EgressLongQuery = "egress.long_query", Egress;
    /// Markdown links neutralised in a response.
    EgressMarkdownLink = "egress.markdown_link", Egress;

    /// A prompt-injection signature blocked the request.
    InjectionBlocked = "injection.blocked", Injection;
    /// A signature matched in user input (flag or strip).
    InjectionUserInput = "injection.user_input", Injection;
    /// A signature matched in a tool result.
    InjectionToolResult = "injection.tool_result", Injection;
    /// The classifier's decision on user input.
    InjectionClassifierUserInput = "injection.classifier.user_input", Injection;
    /// The classifier's decision on a tool result.
    InjectionClassifierToolResult = "injection.classifier.tool_result", Injection;

    /// System-prompt fragments in a response.
    PromptFragment = "prompt.fragment", Prompt;
    /// A managed prompt with no canary issued.
    PromptUnavailable = "prompt.unavailable", Prompt;

    /// Another tenant's identifiers in a response.
    TenantsCrossTenant = "tenants.cross_tenant", Tenants;

    /// No upstream for the API and model.
    UpstreamNoRoute = "upstream.no_route", Upstream;
    /// The upstream has no credential.
    UpstreamNoCredential = "upstream.no_credential", Upstream;
    /// The upstream is unreachable.
    UpstreamUnavailable = "upstream.unavailable", Upstream;
    /// The upstream's circuit is open.
    UpstreamCircuitOpen = "upstream.circuit_open", Upstream;
    /// The upstream did not answer in time.
    UpstreamTimeout = "upstream.timeout", Upstream;
    /// The upstream's answer cannot be passed on safely.
    UpstreamInvalidResponse = "upstream.invalid_response", Upstream;
    /// The route's fallback served the request.
    UpstreamFallback = "upstream.fallback", Upstream;
    /// A stream (AI or MCP) broke off: truncated, oversized, idle, not SSE, or a transport error.
    UpstreamBrokenStream = "upstream.broken_stream", Upstream;

    /// No such MCP server.
    McpUnknownServer = "mcp.unknown_server", Mcp;
    /// A browser origin that may not call MCP servers.
    McpOrigin = "mcp.origin", Mcp;
    /// The role may not use the MCP server.
    McpServerNotAllowed = "mcp.server_not_allowed", Mcp;
    /// The MCP server is isolated.
    McpServerIsolated = "mcp.server_isolated", Mcp;
    /// The MCP session belongs to another principal.
    McpSessionMismatch = "mcp.session_mismatch", Mcp;
    /// An MCP session the gateway did not see handed out.
    McpUnknownSession = "mcp.unknown_session", Mcp;
    /// An invalid JSON-RPC message.
    McpInvalidMessage = "mcp.invalid_message", Mcp;
    /// A tool the role may not call.
    McpToolNotAllowed = "mcp.tool_not_allowed", Mcp;
    /// A tool disabled by a switch.
    McpToolDisabled = "mcp.tool_disabled", Mcp;
    /// A tool whose definition changed from its pin (rug pull).
    McpToolChanged = "mcp.tool_changed", Mcp;
    /// A tool whose definition carries injection signatures.
    McpToolPoisoned = "mcp.tool_poisoned", Mcp;
    /// A tool not pinned while its server's pins are frozen.
    McpToolFrozen = "mcp.tool_frozen", Mcp;
    /// A tool definition without a usable name (withheld).
    McpInvalidTool = "mcp.invalid_tool", Mcp;
    /// Tools outside the caller's role, level or switches removed from a list.
    McpToolsFiltered = "mcp.tools_filtered", Mcp;
    /// A server message that is not JSON-RPC.
    McpServerMessageInvalid = "mcp.server_message_invalid", Mcp;
    /// Forwarded `tools/call` requests (incident evidence).
    McpToolsCall = "mcp.tools_call", Mcp;
    /// A tool call's argument breaks its constraint (MCP).
    ToolArgConstraint = "tool.arg_constraint", Mcp;

    /// Secrets redacted in an MCP answer.
    Redaction = "redaction", Redaction;
}

/// The prefix of [`RuleId::ServerRequestRefused`] ids.
pub const SERVER_REQUEST_REFUSED: &str = "mcp.server_request_refused";

impl Rule {
    /// Whether a block by this rule is a guardrail block (counted by `sustained_injection_campaign`,
    /// and a signature of `anomalous_probing`): injection, tools, egress and role refusals, and the
    /// MCP refusals of tools and servers.
    pub const fn is_guardrail(self) -> bool {
        matches!(self.family(), Family::Injection | Family::Tools | Family::Egress | Family::Role)
            || matches!(
                self,
                Rule::McpToolNotAllowed
                    | Rule::McpToolDisabled
                    | Rule::McpToolChanged
                    | Rule::McpToolPoisoned
                    | Rule::McpToolFrozen
                    | Rule::McpServerNotAllowed
            )
    }

    /// Whether a block by this rule is a tool call the gateway refused (counted by
    /// `unauthorized_tool_execution`).
    pub const fn is_tool_refusal(self) -> bool {
        (matches!(self.family(), Family::Tools) && !matches!(self, Rule::ToolsStripped))
            || matches!(self, Rule::McpToolNotAllowed | Rule::McpToolDisabled)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a decision did, spelled in the trail and the metrics as [`Verdict::as_str`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Let through, nothing changed.
    Allow,
    /// Refused.
    Block,
    /// Let through, changed (model override, tools stripped, fallback upstream).
    Modify,
    /// Let through, recorded and counted.
    Flag,
    /// Let through with the matched spans neutralised.
    Strip,
    /// Let through with matches redacted.
    Redact,
    /// Seen, recorded, nothing else done (detection-only rules).
    Detect,
    /// A link or text neutralised in the answer.
    Neutralize,
    /// The gateway failed (not a policy decision about the caller).
    Error,
    /// An MCP stream ended by the gateway.
    Terminate,
    /// An AI stream ended by the gateway.
    TerminateStream,
    /// Answered by the gateway in safe mode (the model is never asked).
    SafeMode,
}

impl Verdict {
    /// The spelling in audit records and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Block => "block",
            Verdict::Modify => "modify",
            Verdict::Flag => "flag",
            Verdict::Strip => "strip",
            Verdict::Redact => "redact",
            Verdict::Detect => "detect",
            Verdict::Neutralize => "neutralize",
            Verdict::Error => "error",
            Verdict::Terminate => "terminate",
            Verdict::TerminateStream => "terminate_stream",
            Verdict::SafeMode => "safe_mode",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The rule of a decision: a fixed [`Rule`], or one of the families whose ids carry data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// A fixed rule.
    Fixed(Rule),
    /// A request from an MCP server the gateway refused: `mcp.server_request_refused:<method>`.
    ServerRequestRefused(Box<str>),
}

impl RuleId {
    /// The fixed rule, if it is one.
    pub const fn rule(&self) -> Option<Rule> {
        match self {
            RuleId::Fixed(r) => Some(*r),
            RuleId::ServerRequestRefused(_) => None,
        }
    }

    /// See [`Rule::is_guardrail`].
    pub fn is_guardrail(&self) -> bool {
        self.rule().is_some_and(Rule::is_guardrail)
    }

    /// See [`Rule::is_tool_refusal`].
    pub fn is_tool_refusal(&self) -> bool {
        self.rule().is_some_and(Rule::is_tool_refusal)
    }

    /// The id as text: borrowed for a fixed rule.
    pub fn as_text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            RuleId::Fixed(r) => std::borrow::Cow::Borrowed(r.as_str()),
            RuleId::ServerRequestRefused(m) => std::borrow::Cow::Owned(format!("{SERVER_REQUEST_REFUSED}:{m}")),
        }
    }

    /// Whether this is the fixed rule `r`.
    pub fn is(&self, r: Rule) -> bool {
        self.rule() == Some(r)
    }
}

/// One decision: the rule and what it did (`allow`, `block`, `modify`, `redact`, …). In the trail:
/// `{"action": …, "rule": …}` (keys in the trail's canonical, sorted order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule.
    pub rule: RuleId,
    /// What it did.
    pub action: Verdict,
}

impl Decision {
    /// A decision of a fixed rule.
    pub fn new(rule: Rule, action: Verdict) -> Decision {
        Decision { rule: RuleId::Fixed(rule), action }
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("action", &self.action)?;
        m.serialize_entry("rule", &self.rule)?;
        m.end()
    }
}

impl From<Rule> for RuleId {
    fn from(r: Rule) -> RuleId {
        RuleId::Fixed(r)
    }
}

impl PartialEq<Rule> for RuleId {
    fn eq(&self, r: &Rule) -> bool {
        self.is(*r)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleId::Fixed(r) => f.write_str(r.as_str()),
            RuleId::ServerRequestRefused(m) => write!(f, "{SERVER_REQUEST_REFUSED}:{m}"),
        }
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RuleId::Fixed(r) => s.serialize_str(r.as_str()),
            RuleId::ServerRequestRefused(_) => s.collect_str(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.as_str()), "duplicate id {}", r.as_str());
            assert_eq!(Rule::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Rule::parse("tools."), None);
    }

    #[test]
    fn predicates_match_the_families_they_name() {
        // What the incident engine counted by prefix before the ids were typed.
        for r in Rule::ALL {
            let id = r.as_str();
            let guardrail = ["injection.", "tools.", "egress.", "role.", "mcp.tool_", "mcp.server_not_allowed"]
                .iter()
                .any(|p| id.starts_with(p));
            assert_eq!(r.is_guardrail(), guardrail, "{id}");
            let tool_refusal = (id.starts_with("tools.") && id != "tools.stripped")
                || id.starts_with("mcp.tool_not_allowed")
                || id.starts_with("mcp.tool_disabled")
                || id.starts_with("mcp.argument");
            assert_eq!(r.is_tool_refusal(), tool_refusal, "{id}");
        }
        let dynamic = RuleId::ServerRequestRefused("sampling/createMessage".into());
        assert!(!dynamic.is_guardrail() && !dynamic.is_tool_refusal());
        assert_eq!(dynamic.to_string(), "mcp.server_request_refused:sampling/createMessage");
        assert_eq!(serde_json::to_value(&dynamic).ok(), Some(serde_json::json!(dynamic.to_string())));
    }

    /// The README's rule table names exactly the gateway's rule ids.
    #[test]
    fn readme_rule_table_lists_every_rule() {
        let readme = include_str!("../README.md");
        let start = readme.find("<!-- rules:begin -->").expect("README has the rule table");
        let end = readme.find("<!-- rules:end -->").expect("README's rule table ends");
        let mut listed = std::collections::BTreeSet::new();
        for line in readme[start..end].lines().filter(|l| l.starts_with("| `")) {
            let id = line.trim_start_matches("| `").split('`').next().unwrap_or("");
            assert!(listed.insert(id.to_owned()), "README lists `{id}` twice");
        }
        let mut code: std::collections::BTreeSet<String> = Rule::ALL.iter().map(|r| r.as_str().to_owned()).collect();
        code.insert(format!("{SERVER_REQUEST_REFUSED}:<method>"));
        let missing: Vec<_> = code.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&code).collect();
        assert!(missing.is_empty() && extra.is_empty(), "README misses {missing:?}, lists unknown {extra:?}");
    }
}
