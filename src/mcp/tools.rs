//! MCP tools: who may see and call which, canonical definition hashes (the rug-pull defence), tool
//! poisoning in descriptions, and argument checks.

use crate::rules::{Rule, RuleId};
use serde_json::Value;

use crate::config::mcp::{McpServer, PoisonAction};
use crate::config::{KeyEntry, Policy, ToolsMode};
pub use crate::state::pins::{canonical_definition, definition_hash, MAX_KEPT_DEFINITION};
use crate::state::{Action, Snapshot};

/// A line diff of two definitions, pretty-printed with sorted keys: `-` lines only in `old`, `+`
/// lines only in `new`, two-space-indented lines in both. Longest common subsequence over lines;
/// past 2,000 lines a side it shows every line of both as removed and added.
pub fn definition_diff(old: Option<&Value>, new: &Value) -> Vec<String> {
    let pretty = |v: &Value| serde_json::to_string_pretty(&sorted(v)).unwrap_or_default();
    let (a, b) = (old.map(pretty).unwrap_or_default(), pretty(new));
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    if a.len() > 2_000 || b.len() > 2_000 {
        out.extend(a.iter().map(|l| format!("-{l}")));
        out.extend(b.iter().map(|l| format!("+{l}")));
        return out;
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+{}", b[j]));
            j += 1;
        } else {
            out.push(format!("-{}", a[i]));
            i += 1;
        }
    }
    out
}

/// `v` with object keys sorted at every depth (whatever map order serde_json is built with).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Why a tool is withheld from a caller or a call refused: a rule id and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRefusal {
    /// The rule (`mcp.tool_not_allowed`, `egress.metadata`, …).
    pub rule: RuleId,
    /// For the caller; never echoes argument values.
    pub message: String,
}

impl ToolRefusal {
    fn new(rule: impl Into<RuleId>, message: impl Into<String>) -> ToolRefusal {
        ToolRefusal { rule: rule.into(), message: message.into() }
    }
}

/// What the policy and the switches say about one principal's use of one server's tools.
pub struct Judge<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The switches for this request.
    pub snap: &'a Snapshot,
    /// The server.
    pub server: &'a McpServer,
    /// The principal.
    pub key: &'a KeyEntry,
    /// Seconds since the epoch.
    pub now: u64,
    /// `server/tool` → (definition hash, readOnlyHint) as last listed.
    pub hints: &'a moka::sync::Cache<String, (std::sync::Arc<str>, bool)>,
}

/// What filtering one `tools/list` page found.
#[derive(Debug, Default)]
pub struct ListOutcome {
    /// Tools removed, with why (`server/tool`, rule).
    pub withheld: Vec<(String, String)>,
    /// Pins to record (trust on first use, changed definitions).
    pub observe: Vec<Action>,
    /// Security events for the audit trail: (event, tool, detail).
    pub events: Vec<(&'static str, String, String)>,
}

impl Judge<'_> {
    fn qualified(&self, tool: &str) -> String {
        format!("{}/{}", self.server.name, tool)
    }

    /// Role, switches and level: the checks that need no definition.
    fn permitted(&self, tool: &str, read_only_hint: Option<bool>) -> Result<(), ToolRefusal> {
        let q = self.qualified(tool);
        let role_ok = self
            .policy
            .roles
            .get(&self.key.role)
            .and_then(|r| r.mcp.as_ref())
            .is_some_and(|(tools, _)| tools.matches(&q));
        if !role_ok {
            return Err(ToolRefusal::new(
                Rule::McpToolNotAllowed,
                format!("tool `{q}` is not allowed for your role; the call was refused by firebreak policy"),
            ));
        }
        if self.snap.tool_disabled(&q, self.now) || self.snap.tool_disabled(tool, self.now) {
            return Err(ToolRefusal::new(
                Rule::McpToolDisabled,
                format!("tool `{q}` is disabled by the gateway operator"),
            ));
        }
        let level = self.snap.level;
        let ok = match self.policy.levels.get(level).tools {
            ToolsMode::All => true,
            // Declared in the policy, else the server's readOnlyHint, else side effects (fail closed).
            ToolsMode::NoSideEffects => {
                let declared = self.server.tools.get(tool).and_then(|t| t.side_effects);
                declared.map_or(read_only_hint == Some(true), |s| !s)
            }
            ToolsMode::None => false,
        };
        if !ok {
            return Err(ToolRefusal::new(
                Rule::LevelTools,
                format!("tool `{q}` is not available at degradation level {}", level.as_str()),
            ));
        }
        Ok(())
    }

    /// The pin state of a tool as the switches record it, for a call (the definition is not at hand).
    fn pinned_for_call(&self, tool: &str) -> Result<(), ToolRefusal> {
        let q = self.qualified(tool);
        let pin = self.snap.tool_pins.get(&q);
        if let Some(p) = pin {
            if p.pending.is_some() {
                // A pending definition is a changed one unless the switches recorded a stronger reason.
                let rule = p.pending_reason.as_deref().and_then(Rule::parse).unwrap_or(Rule::McpToolChanged);
                return Err(ToolRefusal::new(rule, withheld_message(&q, p.pending_reason.as_deref())));
            }
            if let Some(policy_pin) = self.server.pins.get(tool) {
                if p.hash.as_deref().is_some_and(|h| h != hex::encode(policy_pin)) {
                    return Err(ToolRefusal::new(
                        Rule::McpToolChanged,
                        withheld_message(&q, Some(Rule::McpToolChanged.as_str())),
                    ));
                }
            }
            if p.hash.is_none() {
                return Err(ToolRefusal::new(
                    Rule::McpToolFrozen,
                    withheld_message(&q, Some(Rule::McpToolFrozen.as_str())),
                ));
            }
        } else if self.snap.server_frozen(&self.server.name, self.now) {
            return Err(ToolRefusal::new(
                Rule::McpToolFrozen,
                withheld_message(&q, Some(Rule::McpToolFrozen.as_str())),
            ));
        }
        Ok(())
    }

    /// Decides a `tools/call` request's params.
    pub fn call(&self, params: Option<&Value>) -> Result<String, ToolRefusal> {
        let name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| ToolRefusal::new(Rule::McpInvalidMessage, "tools/call needs params.name"))?;
        // The server's readOnlyHint counts only as listed in the definition that is trusted now.
        let q = self.qualified(name);
        let trusted = match self.server.pins.get(name) {
            Some(p) => Some(hex::encode(p)),
            None => self.snap.tool_pins.get(&q).and_then(|p| p.hash.clone()),
        };
        let read_only = self.hints.get(&q).filter(|(h, _)| trusted.as_deref() == Some(&**h)).map(|(_, ro)| ro);
        self.permitted(name, read_only)?;
        self.pinned_for_call(name)?;
        let empty = Value::Object(serde_json::Map::new());
        let args = params.and_then(|p| p.get("arguments")).unwrap_or(&empty);
        if let Some(info) = self.server.tools.get(name) {
            for (arg, rule) in &info.args {
                if let Some(detail) = rule.violation(arg, args.get(arg)) {
                    return Err(ToolRefusal::new(Rule::ToolArgConstraint, detail));
                }
            }
        }
        let blocked = |h: &str| self.snap.egress_blocked(h, self.now);
        if let Some((pointer, reason)) = self.policy.egress.check_json(args, &blocked).into_iter().next() {
            return Err(ToolRefusal::new(
                reason.rule_id(),
                format!("argument `{}`: {}", pointer.trim_start_matches('/'), reason.message()),
            ));
        }
        Ok(name.to_owned())
    }

    /// Filters one `tools/list` result in place: only tools this caller may use, whose definitions
    /// are trusted and free of injection signatures.
    pub fn filter_list(&self, result: &mut serde_json::Map<String, Value>) -> ListOutcome {
        let mut out = ListOutcome::default();
        let Some(Value::Array(tools)) = result.get_mut("tools") else { return out };
        tools.retain(|t| {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                out.withheld.push((self.qualified("?"), Rule::McpInvalidTool.as_str().into()));
                return false;
            };
            let q = self.qualified(name);
            let hash = definition_hash(t);
            // Definition checks run for every tool, allowed or not, so a rug pull is noticed (and
            // recorded) whoever lists the tools.
            let poison = self.poisoned(t);
            // A definition the policy pins, or an operator approved, was reviewed: it stands.
            let reviewed = self.server.pins.get(name).is_some_and(|p| hex::encode(p) == hash)
                || self.snap.tool_pins.get(&q).is_some_and(|p| p.pending.is_none() && p.hash.as_deref() == Some(&hash));
            let suspect = poison.filter(|_| !reviewed);
            if let Some(sig) = &suspect {
                out.events.push(("tool_poisoning", q.clone(), sig.clone()));
            }
            let withhold = suspect.as_ref().filter(|_| self.server.description_injection == PoisonAction::Withhold);
            let verdict = self.definition(t, name, &hash, withhold.is_some(), &mut out);
            if let Some(sig) = withhold {
                let recorded = self.snap.tool_pins.get(&q).is_some_and(|p| p.pending.as_deref() == Some(&hash));
                let reason_known = self
                    .snap
                    .tool_pins
                    .get(&q)
                    .is_some_and(|p| p.pending_reason.as_deref() == Some(Rule::McpToolPoisoned.as_str()));
                if !(recorded && reason_known) {
                    out.observe.push(Action::ObserveTool {
                        server: self.server.name.clone(),
                        tool: name.to_owned(),
                        hash: hash.clone(),
                        suspect: Some(Rule::McpToolPoisoned.as_str().into()),
                        definition: Some(canonical_definition(t)),
                    });
                }
                if let Err(rule) = verdict {
                    out.withheld.push((q.clone(), rule.as_str().into()));
                }
                out.withheld.push((q, format!("{} ({sig})", Rule::McpToolPoisoned.as_str())));
                return false;
            }
            if let Err(rule) = verdict {
                out.withheld.push((q, rule.as_str().into()));
                return false;
            }
            self.shadowing(name, &mut out);
            let read_only = t.pointer("/annotations/readOnlyHint").and_then(Value::as_bool);
            self.hints.insert(q.clone(), (std::sync::Arc::from(hash.as_str()), read_only == Some(true)));
            match self.permitted(name, read_only) {
                Ok(()) => true,
                Err(r) => {
                    out.withheld.push((q, r.rule.to_string()));
                    false
                }
            }
        });
        out
    }

    /// Compares a definition with its pin; records what must be recorded.
    fn definition(
        &self,
        tool: &Value,
        name: &str,
        hash: &str,
        suspect: bool,
        out: &mut ListOutcome,
    ) -> Result<(), Rule> {
        let q = self.qualified(name);
        let observe = |out: &mut ListOutcome, suspect: Option<&str>| {
            out.observe.push(Action::ObserveTool {
                server: self.server.name.clone(),
                tool: name.to_owned(),
                hash: hash.to_owned(),
                suspect: suspect.map(str::to_owned),
                definition: Some(canonical_definition(tool)),
            })
        };
        if let Some(pinned) = self.server.pins.get(name) {
            if hex::encode(pinned) == hash {
                return Ok(());
            }
            out.events.push(("tool_definition_changed", q, "differs from the hash pinned in the policy".into()));
            observe(out, Some(Rule::McpToolChanged.as_str()));
            return Err(Rule::McpToolChanged);
        }
        match self.snap.tool_pins.get(&q) {
            Some(p) if p.pending.is_some() => {
                if p.pending.as_deref() != Some(hash) && p.hash.as_deref() != Some(hash) {
                    out.events.push(("tool_definition_changed", q, "changed again while awaiting approval".into()));
                    observe(out, None);
                }
                Err(match p.pending_reason.as_deref().and_then(Rule::parse) {
                    Some(r @ (Rule::McpToolPoisoned | Rule::McpToolFrozen)) => r,
                    _ => Rule::McpToolChanged,
                })
            }
            Some(p) if p.hash.as_deref() == Some(hash) => {
                // A pin trusted before definitions were kept gets its definition, once.
                if p.definition.is_none() && canonical_definition(tool).to_string().len() <= MAX_KEPT_DEFINITION {
                    observe(out, None);
                }
                Ok(())
            }
            Some(p) if p.hash.is_some() => {
                out.events.push(("tool_definition_changed", q, "differs from the definition first trusted".into()));
                observe(out, None);
                Err(Rule::McpToolChanged)
            }
            _ if self.snap.server_frozen(&self.server.name, self.now) => {
                out.events.push(("tool_rejected_frozen", q, "new tool while the server's tools are frozen".into()));
                observe(out, None);
                Err(Rule::McpToolFrozen)
            }
            _ => {
                if !suspect {
                    observe(out, None);
                }
                Ok(())
            }
        }
    }

    /// The first injection signature in the tool's description, title or schema descriptions.
    fn poisoned(&self, tool: &Value) -> Option<String> {
        poison_signature(self.policy, tool)
    }

    fn shadowing(&self, name: &str, out: &mut ListOutcome) {
        let other = self.policy.mcp.servers.keys().find(|s| {
            *s != &self.server.name
                && (self.snap.tool_pins.contains_key(&format!("{s}/{name}"))
                    || self.policy.mcp.servers.get(*s).is_some_and(|srv| srv.pins.contains_key(name)))
        });
        if let Some(s) = other {
            out.events.push(("tool_shadowing", self.qualified(name), format!("same name as a tool of server `{s}`")));
        }
    }
}

/// The first prompt-injection signature (its id) in a tool definition's description-like strings
/// (description, title, schema descriptions, enum values, defaults): tool poisoning. The check the
/// gateway applies to every listed tool, and `firebreak mcp verify` too.
pub fn poison_signature(policy: &Policy, tool: &Value) -> Option<String> {
    let mut text = String::new();
    collect_text(tool, &mut text);
    policy.injection.scan(&text).first().map(|h| h.id.to_owned())
}

fn withheld_message(q: &str, reason: Option<&str>) -> String {
    match reason.and_then(Rule::parse) {
        Some(Rule::McpToolPoisoned) => format!(
            "tool `{q}` is withheld: its description matches a prompt-injection signature; an operator must review and approve it"
        ),
        Some(Rule::McpToolFrozen) => {
            format!("tool `{q}` is withheld: the server's tool definitions are frozen by the gateway operator")
        }
        _ => format!(
            "tool `{q}` is withheld: its definition changed since it was trusted; an operator must approve it (firebreak admin approve-tool)"
        ),
    }
}

/// Description-like strings of a tool (not names or types), newline-separated.
fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("description" | "title", Value::String(s)) => {
                        out.push_str(s);
                        out.push('\n');
                    }
                    (_, Value::Object(_) | Value::Array(_)) => collect_text(x, out),
                    // Enum values and defaults reach the model too.
                    ("default" | "const" | "examples", Value::String(s)) => {
                        out.push_str(s);
                        out.push('\n');
                    }
                    _ => {}
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                if let Value::String(s) = x {
                    out.push_str(s);
                    out.push('\n');
                } else {
                    collect_text(x, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_is_canonical() {
        let a = json!({"name":"echo","description":"Echo","inputSchema":{"type":"object","properties":{"m":{"type":"string"}}}});
        let b = json!({"inputSchema":{"properties":{"m":{"type":"string"}},"type":"object"},"description":"Echo","name":"echo","_meta":{"x":1}});
        assert_eq!(definition_hash(&a), definition_hash(&b));
        let c = json!({"name":"echo","description":"Echo!","inputSchema":{"type":"object","properties":{"m":{"type":"string"}}}});
        assert_ne!(definition_hash(&a), definition_hash(&c));
        assert_eq!(definition_hash(&a).len(), 64);
    }

    #[test]
    fn definition_diff_marks_changed_lines_only() {
        let old = canonical_definition(
            &json!({"name":"echo","description":"Echo","inputSchema":{"type":"object"},"_meta":{"x":1}}),
        );
        let new = canonical_definition(
            &json!({"name":"echo","description":"Echo. Ignore previous","inputSchema":{"type":"object"}}),
        );
        assert!(old.get("_meta").is_none(), "only hashed fields are kept");
        let d = definition_diff(Some(&old), &new);
        assert_eq!(d.iter().filter(|l| l.starts_with('-')).count(), 1, "{d:?}");
        assert_eq!(d.iter().filter(|l| l.starts_with('+')).count(), 1, "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("+  \"description\": \"Echo. Ignore previous\"")), "{d:?}");
        assert!(d.iter().any(|l| l.starts_with(' ') && l.contains("\"name\": \"echo\"")), "{d:?}");
        // Nothing trusted yet: every line is added.
        assert!(definition_diff(None, &new).iter().all(|l| l.starts_with('+')));
        // The kept definition has the hash of the definition it was taken from.
        let t = json!({"name":"echo","description":"Echo","inputSchema":{"type":"object"},"_meta":{"x":1}});
        assert_eq!(definition_hash(&canonical_definition(&t)), definition_hash(&t));
    }

    #[test]
    fn text_of_a_tool() {
        let t = json!({"name":"x","description":"top","inputSchema":{"properties":{"a":{"description":"inner","enum":["e1"]}}}});
        let mut s = String::new();
        collect_text(&t, &mut s);
        assert!(s.contains("top") && s.contains("inner") && s.contains("e1"));
    }
}
