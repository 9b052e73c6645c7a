//! `GET /admin/v1/alerts?limit=N` (the recent alerts and anomalies: incidents, triggers close to
//! firing, rule spikes, and each sink's counters) and `POST /admin/v1/alerts/test/<sink>` (a test
//! alert through one sink, answered with what its receiver said).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::identity::Identity;
use super::{error, json_response, read, Admin};
use crate::alerts::TestError;
use crate::http::body::Body;

/// Default and largest `limit`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 10_000;

impl Admin {
    pub(super) async fn alerts(&self, query: Option<&str>) -> Response<Body> {
        let mut limit = DEFAULT_LIMIT;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "limit" => match v.parse::<usize>() {
                    Ok(n) if n > 0 => limit = n.min(MAX_LIMIT),
                    _ => return error(StatusCode::BAD_REQUEST, "invalid_limit", "limit must be a positive number"),
                },
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "unknown_parameter",
                        &format!("unknown parameter `{k}`; use limit"),
                    )
                }
            }
        }
        let policy = self.gw.policy();
        let open: Vec<Value> = self
            .gw
            .incidents
            .list(true)
            .await
            .into_iter()
            .take(limit)
            .map(|i| {
                json!({
                    "id": i.id, "severity": i.severity.as_str(), "trigger": i.trigger,
                    "user": i.principal.user, "tenant": i.principal.tenant, "server": i.server,
                    "first_seen": i.first_seen, "last_seen": i.last_seen, "firings": i.firings,
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "alerts": self.gw.alerts.recent(limit),
                "open_incidents": open,
                "near_firing": crate::gateway::alerting::near_firing(&self.gw, limit).await,
                "spikes": self.gw.alerts.spikes.recent(limit),
                "sinks": self.gw.alerts.sink_status(&policy),
                "settings": {
                    "near_threshold": policy.alerts.near_threshold,
                    "spike_window": humantime::format_duration(policy.alerts.spike_window).to_string(),
                    "spike_factor": policy.alerts.spike_factor,
                    "spike_min_events": policy.alerts.spike_min_events,
                    "dead_letter_file": self.gw.alerts.dead_letter_file(&policy).display().to_string(),
                },
            }),
        )
    }

    pub(super) async fn alerts_test(&self, req: Request<Incoming>, sink: String, who: &Identity) -> Response<Body> {
        let bytes = match read(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let meta: Value = if bytes.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_body",
                        "expected a JSON object such as {\"actor\": \"…\"}",
                    )
                }
            }
        };
        // The sender is the authenticated identity; a name the body gives is only who it was for.
        let actor = who.id.as_str();
        let on_behalf_of: Option<String> = meta
            .get("actor")
            .and_then(Value::as_str)
            .filter(|b| *b != who.id)
            .map(|b| b.chars().filter(|c| !c.is_control()).take(128).collect());
        let policy = self.gw.policy();
        match self.gw.alerts.test(&policy, &sink, actor, on_behalf_of.as_deref()).await {
            Ok((alert, out)) => {
                let delivered = out.error.is_none() && out.status.is_some_and(|s| (200..300).contains(&s));
                tracing::info!(sink = %sink, actor, delivered, status = out.status, "test alert sent");
                json_response(
                    if delivered { StatusCode::OK } else { StatusCode::BAD_GATEWAY },
                    &json!({
                        "sink": sink,
                        "alert": alert.id,
                        "delivered": delivered,
                        "status": out.status,
                        "error": out.error,
                        "answer": out.answer,
                    }),
                )
            }
            Err(e @ TestError::Unknown(..)) => error(StatusCode::NOT_FOUND, "unknown_sink", &e.to_string()),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "alerts_unavailable", &e.to_string()),
        }
    }
}
