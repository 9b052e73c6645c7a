//! `replay --from-audit FILE --since …`: the blocked requests recorded in an audit trail become a new
//! suite file whose cases expect them to stay blocked.
//!
//! A record carries the request payload only when the policy that wrote it kept payloads (`[audit]
//! store_blocked_payloads = true`), with secrets already redacted by the scanner. Records without one
//! still become cases, marked `skip` with the reason, so the suite lists every blocked request and
//! says which ones cannot be replayed.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::build::Kind;

#[derive(Debug, Serialize)]
struct OutSuite {
    cases: Vec<OutCase>,
}

#[derive(Debug, Serialize)]
struct OutCase {
    id: String,
    description: String,
    category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<OutRequest>,
    expect: OutExpect,
}

#[derive(Debug, Serialize)]
struct OutRequest {
    kind: String,
    body: String,
}

#[derive(Debug, Serialize)]
struct OutExpect {
    outcome: &'static str,
}

/// What the conversion found.
#[derive(Debug, Default)]
pub struct Converted {
    /// The suite file's text.
    pub toml: String,
    /// Cases with a payload.
    pub replayable: usize,
    /// Cases marked skip (no payload stored).
    pub without_payload: usize,
}

/// Converts the blocked requests in `records` (audit records, oldest first) into a suite.
pub fn convert(records: &[Value], source: &str, since: Option<SystemTime>) -> Result<Converted, super::SetupError> {
    let mut out = OutSuite { cases: Vec::new() };
    let mut c = Converted::default();
    for r in records {
        let s = |k: &str| r.get(k).and_then(Value::as_str);
        if s("kind") != Some("request") || s("event") != Some("decision") {
            continue;
        }
        let blocking: Vec<&str> = r
            .get("decisions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| d.get("action").and_then(Value::as_str) == Some("block"))
            .filter_map(|d| d.get("rule").and_then(Value::as_str))
            .collect();
        if blocking.is_empty() {
            continue;
        }
        let seq = r.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let endpoint = s("endpoint").unwrap_or("unknown");
        let kind = Kind::of_endpoint(endpoint);
        let description = format!(
            "audit record {seq} ({}): {} on {endpoint}, blocked by {}",
            s("time").unwrap_or("?"),
            s("user").map_or_else(|| "an anonymous caller".to_owned(), |u| format!("user {u}")),
            blocking.join(", ")
        );
        let (request, skip) = match (r.get("payload"), kind) {
            (Some(p), Some(kind)) => {
                let body = match p {
                    Value::String(text) => text.clone(),
                    v => serde_json::to_string_pretty(v).map_err(|e| super::SetupError::Serialize(e.to_string()))?,
                };
                c.replayable += 1;
                (Some(OutRequest { kind: kind.to_owned(), body }), None)
            }
            (None, _) => {
                c.without_payload += 1;
                let why = "the payload was not stored (refused before its body was read, or the policy had \
                           [audit] store_blocked_payloads = false)";
                (None, Some(why.to_owned()))
            }
            (Some(_), None) => {
                c.without_payload += 1;
                (None, Some(format!("endpoint `{endpoint}` cannot be replayed")))
            }
        };
        out.cases.push(OutCase {
            id: format!("audit-{seq}"),
            description,
            category: "from-audit".into(),
            principal: s("key_id").map(str::to_owned),
            session: s("session").map(str::to_owned),
            skip,
            request,
            expect: OutExpect { outcome: "blocked" },
        });
    }
    let since = since.map_or_else(|| "the beginning".to_owned(), |t| humantime::format_rfc3339_seconds(t).to_string());
    let header = format!(
        "# firebreak replay suite generated from the audit trail {source}, records since {since}.\n\
         # {} blocked request(s): {} with a stored payload (secrets redacted), {} without (marked skip).\n\
         # Cases name their principal by key id: run with --key <key-id>=<virtual key>.\n\n",
        out.cases.len(),
        c.replayable,
        c.without_payload
    );
    c.toml = if out.cases.is_empty() {
        header
    } else {
        header + &toml::to_string(&out).map_err(|e| super::SetupError::Serialize(e.to_string()))?
    };
    Ok(c)
}
