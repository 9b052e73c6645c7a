//! What each sink type receives: the signed webhook, the Slack message, the PagerDuty Events v2
//! event and the OTLP/HTTP JSON log record. Secrets go only into the request built here (a header,
//! the URL, the body's `routing_key`), never into the alert, a log line or the dead-letter file.

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::Full;
use serde_json::{json, Value};

use super::event::{action_line, Alert};
use crate::config::alerts::{SinkConfig, SinkKind};
use crate::config::incidents::IncidentSeverity;

/// What a sink's requests need besides the alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// Console link (Slack, PagerDuty).
    pub console_url: Option<String>,
    /// OTLP `service.name`.
    pub service: String,
}

/// `t=<unix>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>`: the timestamp is signed, so a
/// receiver that refuses old timestamps refuses replays.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The requests of one delivery attempt (PagerDuty tests send a trigger and its resolve).
pub fn requests(sink: &SinkConfig, alert: &Alert, ctx: &Context) -> Result<Vec<Request<Full<Bytes>>>, String> {
    match &sink.kind {
        SinkKind::Webhook { url, secret } => {
            let body = webhook_body(alert, ctx).to_string();
            let sig = signature(secret.expose().as_bytes(), unix_now(), body.as_bytes());
            let mut r = post(url.clone(), body)?;
            let h = r.headers_mut();
            h.insert("x-firebreak-signature", value(&sig)?);
            h.insert("x-firebreak-event", value(&alert.draft.event)?);
            h.insert("x-firebreak-delivery", value(&alert.id)?);
            Ok(vec![r])
        }
        SinkKind::Slack { url } => {
            let uri: http::Uri = url.expose().parse().map_err(|_| "the Slack webhook URL is not valid".to_owned())?;
            Ok(vec![post(uri, slack_body(alert, ctx).to_string())?])
        }
        SinkKind::PagerDuty { url, routing_key } => {
            let mut out = vec![post(
                url.clone(),
                pagerduty_body(alert, ctx, routing_key.expose(), alert.draft.resolve).to_string(),
            )?];
            if alert.test {
                // A test must not leave an incident open on the on-call's phone.
                out.push(post(url.clone(), pagerduty_body(alert, ctx, routing_key.expose(), true).to_string())?);
            }
            Ok(out)
        }
        SinkKind::Otlp { url } => Ok(vec![post(url.clone(), otlp_body(alert, ctx).to_string())?]),
    }
}

fn value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|_| "a header value is not valid".to_owned())
}

fn post(uri: http::Uri, body: String) -> Result<Request<Full<Bytes>>, String> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("firebreak/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| "the request could not be built".to_owned())
}

/// The alert as JSON, with the console link and the actions as lines.
pub fn webhook_body(alert: &Alert, ctx: &Context) -> Value {
    let mut v = alert.to_json();
    if let Some(c) = &ctx.console_url {
        v["console_url"] = json!(c);
    }
    v["source"] = json!("firebreak");
    v
}

/// Actions taken (and awaiting an operator), one line each.
fn actions(alert: &Alert, key: &str) -> Vec<String> {
    alert
        .draft
        .fields
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(action_line).collect())
        .unwrap_or_default()
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` (notifications) and blocks with the severity, the
/// trigger, the principal, the actions taken and a console link.
pub fn slack_body(alert: &Alert, ctx: &Context) -> Value {
    let d = &alert.draft;
    let f = &d.fields;
    let trigger = f.get("trigger").and_then(Value::as_str).unwrap_or(&d.event);
    let principal = super::event::principal(f);
    let taken = actions(alert, "actions");
    let waiting = actions(alert, "awaiting_operator");
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", d.severity.as_str())}),
        json!({"type": "mrkdwn", "text": format!("*Trigger*\n{}", slack_escape(trigger))}),
        json!({"type": "mrkdwn", "text": format!("*Principal*\n{}", slack_escape(&principal))}),
        json!({"type": "mrkdwn", "text": format!("*Event*\n{}", d.event)}),
    ];
    if let Some(i) = f.get("incident").and_then(Value::as_str) {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Incident*\n{}", slack_escape(i))}));
    }
    let taken_text = if taken.is_empty() { "none".to_owned() } else { slack_escape(&taken.join("\n")) };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("{} {}", d.severity.as_str(), d.event)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&d.summary)}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Actions taken*\n{taken_text}")}}),
    ];
    if !waiting.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Awaiting an operator*\n{}", slack_escape(&waiting.join("\n")))}}));
    }
    let mut text = format!("[{}] {} (trigger: {trigger}; principal: {principal}", d.severity.as_str(), d.summary);
    text.push_str(&format!("; actions taken: {})", if taken.is_empty() { "none".into() } else { taken.join(", ") }));
    if let Some(c) = &ctx.console_url {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("<{}|Open the firebreak console>", slack_escape(c))}}));
        text.push_str(&format!(" {c}"));
    }
    json!({"text": slack_escape(&text), "blocks": blocks})
}

fn pd_severity(s: IncidentSeverity) -> &'static str {
    match s {
        IncidentSeverity::Sev1 => "critical",
        IncidentSeverity::Sev2 => "error",
        IncidentSeverity::Sev3 => "warning",
        IncidentSeverity::Sev4 => "info",
    }
}

/// A PagerDuty Events API v2 event: `trigger` (or `resolve`) with the alert's dedup key.
pub fn pagerduty_body(alert: &Alert, ctx: &Context, routing_key: &str, resolve: bool) -> Value {
    let d = &alert.draft;
    if resolve {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": d.dedup_key});
    }
    let mut v = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": d.dedup_key,
        "payload": {
            "summary": d.summary.chars().take(1024).collect::<String>(),
            "source": "firebreak",
            "severity": pd_severity(d.severity),
            "timestamp": alert.time,
            "component": d.fields.get("trigger").and_then(Value::as_str).unwrap_or(&d.event),
            "group": d.event.split('.').next().unwrap_or("firebreak"),
            "class": d.event,
            "custom_details": alert.to_json(),
        },
        "client": "firebreak",
    });
    if let Some(c) = &ctx.console_url {
        v["client_url"] = json!(c);
        v["links"] = json!([{"href": c, "text": "firebreak console"}]);
    }
    v
}

fn otlp_severity(s: IncidentSeverity) -> u8 {
    match s {
        IncidentSeverity::Sev1 => 21, // FATAL
        IncidentSeverity::Sev2 => 17, // ERROR
        IncidentSeverity::Sev3 => 13, // WARN
        IncidentSeverity::Sev4 => 9,  // INFO
    }
}

fn attr(k: &str, v: &Value) -> Value {
    let value = match v {
        Value::String(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        other => json!({"stringValue": other.to_string()}),
    };
    json!({"key": k, "value": value})
}

/// One OTLP/HTTP JSON `ExportLogsServiceRequest` holding the alert as a log record.
pub fn otlp_body(alert: &Alert, ctx: &Context) -> Value {
    let d = &alert.draft;
    let nanos = humantime::parse_rfc3339(&alert.time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut attrs = vec![
        attr("firebreak.alert.id", &json!(alert.id)),
        attr("firebreak.event", &json!(d.event)),
        attr("firebreak.severity", &json!(d.severity.as_str())),
        attr("firebreak.dedup_key", &json!(d.dedup_key)),
    ];
    for (k, v) in &d.fields {
        attrs.push(attr(&format!("firebreak.{k}"), v));
    }
    json!({"resourceLogs": [{
        "resource": {"attributes": [attr("service.name", &json!(ctx.service))]},
        "scopeLogs": [{
            "scope": {"name": "firebreak.alerts"},
            "logRecords": [{
                "timeUnixNano": nanos.to_string(),
                "observedTimeUnixNano": nanos.to_string(),
                "severityNumber": otlp_severity(d.severity),
                "severityText": d.severity.as_str(),
                "body": {"stringValue": d.summary},
                "attributes": attrs,
            }]
        }]
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = signature(b"k", 100, b"{}");
        assert!(a.starts_with("t=100,v1="));
        assert_ne!(a, signature(b"k", 101, b"{}"));
        assert_ne!(a, signature(b"k", 100, b"{ }"));
        assert_ne!(a, signature(b"k2", 100, b"{}"));
        // Known answer: HMAC-SHA-256("k", "100.{}").
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let want = hex::encode(ring::hmac::sign(&key, b"100.{}").as_ref());
        assert_eq!(a, format!("t=100,v1={want}"));
    }
}
