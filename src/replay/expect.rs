//! Deciding whether a case passed: what the client received plus the audit records the request
//! produced, checked against the case's expectations. Reasons name rule ids and statuses; indicators
//! and matched text are masked, never printed.

use serde_json::Value;

use super::suite::{Expect, Outcome};

/// What one replayed request produced.
#[derive(Debug, Default)]
pub struct Observed {
    /// HTTP status the client got.
    pub status: u16,
    /// The whole body the client got.
    pub body: Vec<u8>,
    /// The audit records of the request (and any incident records written meanwhile).
    pub records: Vec<Value>,
    /// Whether `records` come from the gateway's audit trail; without it, outcomes are judged from
    /// the response alone.
    pub audited: bool,
}

/// What the gateway decided, summarised from the audit records.
#[derive(Debug, Default)]
struct Decisions {
    /// (rule, action) pairs.
    pairs: Vec<(String, String)>,
    redactions: u64,
}

impl Decisions {
    fn from_records(records: &[Value]) -> Decisions {
        let mut d = Decisions::default();
        for r in records {
            // AI requests write `request` records, MCP requests `mcp` records, with the same fields.
            if !matches!(r.get("kind").and_then(Value::as_str), Some("request" | "mcp")) {
                continue;
            }
            for x in r.get("decisions").and_then(Value::as_array).into_iter().flatten() {
                let rule = x.get("rule").and_then(Value::as_str).unwrap_or_default();
                let action = x.get("action").and_then(Value::as_str).unwrap_or_default();
                d.pairs.push((rule.to_owned(), action.to_owned()));
            }
            if let Some(m) = r.get("redactions").and_then(Value::as_object) {
                d.redactions += m.values().filter_map(Value::as_u64).sum::<u64>();
                d.pairs.extend(m.keys().map(|k| (k.clone(), "redact".to_owned())));
            }
            // Records the stream pump writes after the response head went out.
            let action = match r.get("event").and_then(Value::as_str) {
                Some("tool_call_refused") => "block",
                Some("stream_terminated") => "terminate_stream",
                Some("links_neutralized") => "neutralize",
                Some("prompt_fragments") => "detect",
                Some("cross_tenant") => "detect",
                Some("stream_error") => "error",
                _ => continue,
            };
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
            d.pairs.push((rule.to_owned(), action.to_owned()));
        }
        d
    }

    fn blocked(&self) -> bool {
        self.pairs.iter().any(|(rule, action)| {
            matches!(action.as_str(), "block" | "strip" | "safe_mode" | "terminate_stream") || rule == "tools.stripped"
        })
    }

    fn redacted(&self) -> bool {
        self.redactions > 0 || self.pairs.iter().any(|(_, a)| a == "redact" || a == "neutralize")
    }

    fn summary(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        for (r, a) in &self.pairs {
            let s = format!("{r} → {a}");
            if !v.contains(&s) {
                v.push(s);
            }
        }
        if v.is_empty() {
            "no decision recorded".into()
        } else {
            v.join(", ")
        }
    }
}

/// Masks a secret for a report: its first two characters and its length.
pub fn mask(s: &str) -> String {
    let head: String = s.chars().take(2).collect();
    format!("\"{head}…\" ({} chars)", s.chars().count())
}

/// Every view of the body a client could read a secret from: the raw bytes, every JSON string
/// (escapes decoded), and for streams the text deltas joined in order (a secret split over chunks).
fn views(body: &[u8]) -> Vec<String> {
    let raw = String::from_utf8_lossy(body).into_owned();
    let mut strings = String::new();
    let mut deltas = String::new();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        all_strings(&v, &mut strings);
    } else {
        for line in raw.lines() {
            let Some(data) = line.strip_prefix("data:") else { continue };
            let Ok(v) = serde_json::from_str::<Value>(data.trim_start()) else { continue };
            all_strings(&v, &mut strings);
            delta_text(&v, &mut deltas);
        }
    }
    vec![raw, strings, deltas]
}

fn all_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| all_strings(x, out)),
        _ => {}
    }
}

/// The streamed text pieces of one SSE event, in the three formats.
fn delta_text(v: &Value, out: &mut String) {
    let s = |x: Option<&Value>| x.and_then(Value::as_str).map(str::to_owned);
    for c in v.get("choices").and_then(Value::as_array).into_iter().flatten() {
        let d = c.get("delta");
        if let Some(t) = s(d.and_then(|d| d.get("content"))) {
            out.push_str(&t);
        }
        for call in d.and_then(|d| d.get("tool_calls")).and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = s(call.get("function").and_then(|f| f.get("arguments"))) {
                out.push_str(&t);
            }
        }
    }
    if let Some(d) = v.get("delta") {
        if let Some(t) = d.as_str() {
            out.push_str(t); // Responses API deltas
        } else if let Some(t) = s(d.get("text")).or_else(|| s(d.get("partial_json"))) {
            out.push_str(&t); // Anthropic deltas
        }
    }
}

/// Checks a case's expectations; `Ok` carries a short pass reason, `Err` every failed expectation.
pub fn check(expect: &Expect, obs: &Observed) -> Result<String, String> {
    let d = Decisions::from_records(&obs.records);
    let text = String::from_utf8_lossy(&obs.body);
    let success = (200..300).contains(&obs.status);
    // Without the audit trail (online mode), the response is all there is to judge by.
    let blocked = if obs.audited {
        d.blocked()
    } else {
        !success || text.contains("was blocked by policy") || text.contains("stream_terminated")
    };
    let redacted =
        if obs.audited { d.redacted() } else { text.contains("[REDACTED") || text.contains("removed by policy") };
    let mut fails = Vec::new();
    let mut passes = Vec::new();
    let judged = if obs.audited { d.summary() } else { "judged from the response: no audit trail".into() };
    match expect.outcome {
        Some(Outcome::Blocked) if !blocked => {
            fails.push(format!("expected blocked, but nothing was blocked ({judged})"))
        }
        Some(Outcome::Redacted) if !redacted => {
            fails.push(format!("expected redacted, but nothing was redacted or neutralised ({judged})"))
        }
        Some(Outcome::Redacted) if !success => {
            fails.push(format!("expected a redacted response, but the client got status {}", obs.status))
        }
        Some(Outcome::Allowed) if blocked || redacted || !success => {
            fails.push(format!("expected allowed, but the gateway intervened (status {}; {judged})", obs.status))
        }
        Some(o) => passes.push(o.as_str().to_owned()),
        None => {}
    }
    if let Some(s) = expect.status {
        if s == obs.status {
            passes.push(format!("status {s}"));
        } else {
            fails.push(format!("expected status {s}, got {}", obs.status));
        }
    }
    if !expect.not_contains.is_empty() {
        let before = fails.len();
        let views = views(&obs.body);
        for (i, ind) in expect.not_contains.iter().enumerate() {
            if views.iter().any(|v| v.contains(ind.as_str())) {
                fails.push(format!("indicator #{} {} reached the client", i + 1, mask(ind)));
            }
        }
        if fails.len() == before {
            passes.push(format!("{} indicator(s) kept out", expect.not_contains.len()));
        }
    }
    if !expect.contains.is_empty() {
        let views = views(&obs.body);
        for (i, want) in expect.contains.iter().enumerate() {
            if !views.iter().any(|v| v.contains(want.as_str())) {
                fails.push(format!("expected text #{} {} did not reach the client", i + 1, mask(want)));
            }
        }
    }
    if !expect.rules.is_empty() {
        let before = fails.len();
        if !obs.audited {
            fails.push("`rules` needs the gateway's audit trail (offline mode, or --target-audit)".into());
        }
        for r in &expect.rules {
            if obs.audited && !d.pairs.iter().any(|(rule, _)| rule == r) {
                fails.push(format!("rule `{r}` did not fire ({})", d.summary()));
            }
        }
        if fails.len() == before {
            passes.push(format!("rules {}", expect.rules.join(", ")));
        }
    }
    if let Some(sev) = &expect.incident {
        let found = obs.records.iter().any(|r| {
            r.get("kind").and_then(Value::as_str) == Some("incident")
                && r.get("severity").and_then(Value::as_str) == Some(sev.as_str())
        });
        if found {
            passes.push(format!("incident {sev}"));
        } else if !obs.audited {
            fails.push(format!("expected an incident {sev}, but there is no audit trail to find it in"));
        } else {
            let others: Vec<&str> = obs
                .records
                .iter()
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some("incident"))
                .filter_map(|r| r.get("severity").and_then(Value::as_str))
                .collect();
            fails.push(if others.is_empty() {
                format!("expected an incident {sev}, but no incident was recorded")
            } else {
                format!("expected an incident {sev}, but the incidents recorded were {}", others.join(", "))
            });
        }
    }
    if fails.is_empty() {
        Ok(passes.join("; "))
    } else {
        Err(fails.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(status: u16, body: &str, records: Vec<Value>) -> Observed {
        Observed { status, body: body.as_bytes().to_vec(), records, audited: true }
    }

    #[test]
    fn incident_expectation_reads_incident_records() {
        let e = Expect { incident: Some("SEV-1".into()), ..Expect::default() };
        let none = obs(200, "{}", vec![]);
        assert!(check(&e, &none).unwrap_err().contains("no incident was recorded"));
        let sev2 = obs(200, "{}", vec![json!({"kind": "incident", "severity": "SEV-2"})]);
        assert!(check(&e, &sev2).unwrap_err().contains("SEV-2"));
        let sev1 = obs(200, "{}", vec![json!({"kind": "incident", "severity": "SEV-1"})]);
        assert_eq!(check(&e, &sev1).unwrap(), "incident SEV-1");
    }

    #[test]
    fn secrets_split_over_stream_deltas_are_found_and_masked() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"AKIAIOSF\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"ODNN7EXAMPLE\"}}]}\n\n";
        let e = Expect { not_contains: vec!["AKIAIOSFODNN7EXAMPLE".into()], ..Expect::default() };
        let err = check(&e, &obs(200, body, vec![])).unwrap_err();
        assert!(err.contains("\"AK…\" (20 chars)"), "{err}");
        assert!(!err.contains("AKIAIOSF"), "the reason must not print the indicator: {err}");
    }

    #[test]
    fn outcomes_from_decisions() {
        let blocked = vec![json!({"kind": "request", "decisions": [{"rule": "injection.blocked", "action": "block"}]})];
        let redacted = vec![json!({"kind": "request", "decisions": [{"rule": "allow", "action": "allow"}],
                                   "redactions": {"aws_access_key_id": 1}})];
        let b = Expect { outcome: Some(Outcome::Blocked), ..Expect::default() };
        let r = Expect { outcome: Some(Outcome::Redacted), ..Expect::default() };
        let a = Expect { outcome: Some(Outcome::Allowed), ..Expect::default() };
        assert!(check(&b, &obs(400, "{}", blocked.clone())).is_ok());
        assert!(check(&b, &obs(200, "{}", redacted.clone())).is_err());
        assert!(check(&r, &obs(200, "{}", redacted.clone())).is_ok());
        assert!(check(&a, &obs(200, "{}", redacted)).is_err());
        assert!(check(&a, &obs(400, "{}", blocked)).is_err());
        assert!(check(&a, &obs(200, "{}", vec![])).is_ok());
    }
}
