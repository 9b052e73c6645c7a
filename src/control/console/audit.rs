//! Audit search: the filters of `GET /admin/v1/audit` (and the console's Audit page), and the
//! trail's verification status.

use std::time::SystemTime;

use serde_json::Value;

/// A search of the trail. Every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Records at or after this time.
    pub since: Option<SystemTime>,
    /// Records before this time.
    pub until: Option<SystemTime>,
    /// The `since` and `until` as given (for the form).
    pub since_text: String,
    /// As given.
    pub until_text: String,
    /// `user`.
    pub user: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `session`: an id (compared by its digest) or a `sha256:` digest as the trail stores it.
    pub session: Option<String>,
    /// A rule id: the record's `rule`, a decision's or a redaction's rule, or an incident's trigger
    /// (`prefix*` matches by prefix).
    pub rule: Option<String>,
    /// `kind` (`request`, `switch`, `incident`, …).
    pub kind: Option<String>,
    /// `incident` id.
    pub incident: Option<String>,
    /// Newest records kept.
    pub limit: usize,
}

impl AuditQuery {
    /// Parses a query string; the error names the bad parameter.
    pub fn parse(query: &str) -> Result<AuditQuery, String> {
        let mut q = AuditQuery { limit: 1000, ..AuditQuery::default() };
        for (k, v) in super::form_pairs(query) {
            let v = v.trim().to_owned();
            let opt = || (!v.is_empty()).then(|| v.clone());
            match k.as_str() {
                "since" | "until" if v.is_empty() => {}
                "since" | "until" => {
                    let t = super::super::parse_since(&v).ok_or_else(|| {
                        format!("{k} must be RFC 3339 (2026-11-23T10:00:00Z) or a duration back from now (30m, 24h)")
                    })?;
                    if k == "since" {
                        q.since = Some(t);
                        q.since_text = v;
                    } else {
                        q.until = Some(t);
                        q.until_text = v;
                    }
                }
                "limit" => match v.parse() {
                    Ok(n) if n > 0 => q.limit = n,
                    _ => return Err("limit must be a positive number".into()),
                },
                "user" => q.user = opt(),
                "tenant" => q.tenant = opt(),
                "session" => {
                    q.session =
                        opt().map(|s| if s.starts_with("sha256:") { s } else { crate::audit::session_digest(&s) })
                }
                "rule" => q.rule = opt(),
                "kind" => q.kind = opt(),
                "incident" => q.incident = opt(),
                _ => {
                    return Err(format!(
                        "unknown parameter `{k}`; use since, until, limit, user, tenant, session, rule, kind, incident"
                    ))
                }
            }
        }
        Ok(q)
    }

    /// Whether any filter besides the time window and the limit is set.
    pub fn filtered(&self) -> bool {
        self.user.is_some()
            || self.tenant.is_some()
            || self.session.is_some()
            || self.rule.is_some()
            || self.kind.is_some()
            || self.incident.is_some()
    }

    /// Whether `r` passes every filter but `since` (which the reader applies).
    pub fn matches(&self, r: &Value) -> bool {
        let field = |k: &str| r.get(k).and_then(Value::as_str);
        let eq = |k: &str, want: &Option<String>| want.as_deref().is_none_or(|w| field(k) == Some(w));
        if !(eq("user", &self.user)
            && eq("tenant", &self.tenant)
            && eq("session", &self.session)
            && eq("kind", &self.kind)
            && eq("incident", &self.incident))
        {
            return false;
        }
        if let Some(until) = self.until {
            let before = field("time").and_then(|t| humantime::parse_rfc3339(t).ok()).is_some_and(|t| t < until);
            if !before {
                return false;
            }
        }
        match &self.rule {
            None => true,
            Some(want) => rules_of(r).any(|rule| rule_matches(want, rule)),
        }
    }
}

fn rule_matches(want: &str, rule: &str) -> bool {
    match want.strip_suffix('*') {
        Some(prefix) => rule.starts_with(prefix),
        None => rule == want,
    }
}

/// Every rule id a record names.
fn rules_of(r: &Value) -> impl Iterator<Item = &str> {
    let top = ["rule", "trigger"].into_iter().filter_map(|k| r.get(k).and_then(Value::as_str));
    let lists = ["decisions", "redactions"].into_iter().flat_map(|k| {
        r.get(k).and_then(Value::as_array).into_iter().flatten().filter_map(|d| d.get("rule").and_then(Value::as_str))
    });
    top.chain(lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_combine() {
        let r = json!({"kind": "request", "user": "alice", "tenant": "acme", "time": "2026-01-01T00:00:00Z",
            "session": crate::audit::session_digest("s-1"),
            "decisions": [{"rule": "secrets.aws_access_key_id", "action": "block"}]});
        let q = |s: &str| AuditQuery::parse(s).expect("query");
        assert!(q("user=alice&kind=request").matches(&r));
        assert!(!q("user=bob").matches(&r));
        assert!(q("session=s-1").matches(&r), "a raw session id is compared by its digest");
        assert!(q("rule=secrets.*").matches(&r));
        assert!(!q("rule=secrets").matches(&r));
        assert!(q("until=2026-01-02T00:00:00Z").matches(&r));
        assert!(!q("until=2025-12-31T00:00:00Z").matches(&r));
        assert!(AuditQuery::parse("bogus=1").is_err());
        assert!(AuditQuery::parse("limit=0").is_err());
        assert!(AuditQuery::parse("since=yesterday-ish").is_err());
    }
}
