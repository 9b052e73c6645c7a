//! The decision phases that need no I/O, as plain functions: the pipeline, the benches and (later)
//! offline replay call the same code.

use crate::config::{KeyEntry, Policy};
use crate::protocol::request::Payload;
use crate::protocol::Endpoint;
use crate::rules::Rule;
use crate::state::{Refusal, Snapshot};

use crate::http::error::GatewayError;
use crate::inspect::toolcalls::{CallCheck, CallRefusal};

/// Whether the principal's role, the level and the switches allow `tool`.
pub fn tool_permitted(policy: &Policy, snap: &Snapshot, role: &str, tool: &str, now: u64) -> bool {
    policy.tool_allowed(role, snap.level, tool) && !snap.tool_disabled(tool, now)
}

/// Switches (phase 4): whether this principal may send a request now, and if so the rate limit
/// (requests per minute) to check next (phase 5: the caller awaits the gateway's limiter with it
/// and maps a refusal with [`rate_limited`]).
pub fn admit(
    policy: &Policy,
    snap: &Snapshot,
    key: &KeyEntry,
    endpoint: Endpoint,
    session: Option<&str>,
    now: u64,
) -> Result<u32, GatewayError> {
    if let Some(r) = snap.refusal(key, endpoint, session, now) {
        return Err(refusal_error(policy, snap, r));
    }
    Ok(rate_limit(policy, snap, key, now))
}

/// The rate limit of the current level for this principal (phase 5), for AI and MCP requests
/// alike: requests per minute (0: refused).
pub fn rate_limit(policy: &Policy, snap: &Snapshot, key: &KeyEntry, now: u64) -> u32 {
    let level = policy.levels.get(snap.level);
    snap.user_rpm(&key.user, level.requests_per_minute, now)
}

/// The error for a request the limiter refused at `rpm`, to retry after `retry_after`.
pub fn rate_limited(snap: &Snapshot, rpm: u32, retry_after: std::time::Duration) -> GatewayError {
    GatewayError::RateLimited { rpm, level: snap.level.as_str(), retry_after }
}

/// The error for a switch's refusal (lockdown answers with the level's maintenance message).
pub fn refusal_error(policy: &Policy, snap: &Snapshot, r: Refusal) -> GatewayError {
    match r {
        Refusal::Lockdown => GatewayError::Lockdown(policy.levels.get(snap.level).message.clone()),
        r => GatewayError::Refused(r),
    }
}

/// What [`rewrite`] changed.
#[derive(Debug, Default)]
pub struct Rewrites {
    /// The level replaced the model.
    pub model_overridden: bool,
    /// Tools stripped from the request.
    pub tools_removed: Vec<String>,
}

/// Phase 7: the model allowlist, the level's model override, and tools stripped.
pub fn rewrite(
    policy: &Policy,
    snap: &Snapshot,
    key: &KeyEntry,
    endpoint: Endpoint,
    body: &mut Payload,
    now: u64,
) -> Result<Rewrites, GatewayError> {
    if let (Some(model), Some(role)) = (body.model(), policy.roles.get(&key.role)) {
        if role.models.as_ref().is_some_and(|m| !m.matches(model)) {
            return Err(GatewayError::ModelNotAllowed(model.to_owned()));
        }
    }
    let mut out = Rewrites::default();
    if let Some(m) = &policy.levels.get(snap.level).model {
        if body.model() != Some(m.as_str()) {
            body.set_model(m);
            out.model_overridden = true;
        }
    }
    out.tools_removed = body.strip_tools(endpoint, |name| tool_permitted(policy, snap, &key.role, name, now));
    if !out.tools_removed.is_empty() && policy.roles.get(&key.role).is_some_and(|r| r.refuse_disallowed_tools) {
        return Err(GatewayError::ToolsNotAllowed(std::mem::take(&mut out.tools_removed)));
    }
    Ok(out)
}

/// The tool-call decisions for one principal under one snapshot.
#[derive(Debug)]
pub struct CallPolicy<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The switches in force.
    pub snap: &'a Snapshot,
    /// The principal's role.
    pub role: &'a str,
    /// Now, in seconds since the epoch.
    pub now: u64,
}

impl CallCheck for CallPolicy<'_> {
    fn check_name(&self, name: &str) -> Option<CallRefusal> {
        (!tool_permitted(self.policy, self.snap, self.role, name, self.now)).then(|| CallRefusal {
            rule: Rule::ToolsNotAllowed,
            detail: "the tool is not allowed for your role, at the current level, or by the operator".into(),
        })
    }

    fn check_args(&self, name: &str, args: &str) -> Option<CallRefusal> {
        let parsed: serde_json::Value = if args.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            match serde_json::from_str(args) {
                Ok(v) => v,
                Err(_) => {
                    return Some(CallRefusal {
                        rule: Rule::ToolsArgumentsInvalid,
                        detail: "the arguments are not valid JSON".into(),
                    })
                }
            }
        };
        if let Some(tool) = self.policy.tools.get(name) {
            for (arg, rule) in &tool.args {
                if let Some(detail) = rule.violation(arg, parsed.get(arg)) {
                    return Some(CallRefusal { rule: Rule::ToolsArgument, detail });
                }
            }
        }
        let blocked = |h: &str| self.snap.egress_blocked(h, self.now);
        let denied = self.policy.egress.check_json(&parsed, &blocked);
        denied.into_iter().next().map(|(pointer, reason)| CallRefusal {
            rule: reason.rule_id(),
            detail: format!("argument `{}`: {}", pointer.trim_start_matches('/'), reason.message()),
        })
    }

    fn is_data_tool(&self, name: &str) -> bool {
        self.policy.tools.get(name).is_some_and(|t| t.data)
    }
}

/// What the request-inspection phase found.
#[derive(Debug, Default)]
pub struct RequestFindings {
    /// Redaction rules that matched in tool results (by rule index in the policy's scanner).
    pub redactions: Vec<u16>,
    /// Injection signatures that matched, and the classifier when its thresholds called for an
    /// action (id [`classifier::ID`](crate::inspect::injection::classifier::ID)): (source,
    /// signature id, action taken).
    pub injections: Vec<(&'static str, String, crate::rules::Verdict)>,
    /// The classifier's highest score per source (when the policy enables it).
    pub scores: crate::inspect::injection::classifier::Scores,
}

/// Phase 7b: user input and tool results are checked against the injection signatures and, when
/// the policy enables it, scored by the classifier; the stronger of the two stages' actions for
/// the source is taken (block, strip, flag). Tool results coming back into the conversation are
/// also redacted before the model sees them.
pub fn inspect_request(
    policy: &Policy,
    endpoint: Endpoint,
    body: &mut Payload,
) -> Result<RequestFindings, GatewayError> {
    let mut found = RequestFindings::default();
    inspect_request_into(policy, endpoint, body, &mut found)?;
    Ok(found)
}

/// [`inspect_request`], writing what it found into `found` even when the request is blocked (the
/// audit record of a block carries the classifier's score).
pub fn inspect_request_into(
    policy: &Policy,
    endpoint: Endpoint,
    body: &mut Payload,
    found: &mut RequestFindings,
) -> Result<(), GatewayError> {
    use crate::inspect::injection::classifier::{action_name, ID};
    use crate::inspect::injection::HitAction;
    use crate::protocol::request::{visit_texts, TextOrigin};
    let mut blocked: Option<String> = None;
    let scanner = &policy.scanner;
    let sigs = &policy.injection;
    let changed = visit_texts(endpoint, body, &mut |source, text| {
        let mut changed = false;
        let inj_source = source;
        let v = sigs.verdict(text, inj_source);
        let by_classifier = v.classifier.and_then(|c| {
            found.scores.observe(inj_source, c.score);
            c.action
        });
        if let Some(action) = v.action {
            if action == HitAction::Block && blocked.is_none() {
                blocked = match (v.assessment.action, v.assessment.hits.first()) {
                    (Some(HitAction::Block), Some(h)) => Some(h.id.to_owned()),
                    _ => Some(ID.to_owned()),
                };
            }
            if action == HitAction::Strip {
                if let Some(stripped) = sigs.apply_strip(text, &v) {
                    *text = stripped;
                    changed = true;
                }
            }
            let name = action_name(action);
            found.injections.extend(v.assessment.hits.iter().map(|h| (source.as_str(), h.id.to_owned(), name)));
            if let Some(a) = by_classifier {
                found.injections.push((source.as_str(), ID.to_owned(), action_name(a)));
            }
        }
        if source == TextOrigin::ToolResult {
            let (red, f) = scanner.redact(text);
            if !f.is_empty() {
                found.redactions.extend(f.iter().map(|f| f.rule));
                *text = red.into_owned();
                changed = true;
            }
        }
        changed
    });
    if let Some(id) = blocked {
        return Err(GatewayError::InjectionBlocked(id));
    }
    if changed {
        body.changed = true;
    }
    Ok(())
}
