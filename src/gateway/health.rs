//! The request path's side of the circuit breakers ([`crate::circuit`]): let a request through a
//! target's breaker, report how the target answered, and announce transitions (audit record
//! `kind: circuit`, log line). Shared by the AI pipeline and the MCP gateway.

use std::sync::Arc;

use http::Response;

use super::Gateway;
use crate::audit::Record;
use crate::circuit::{Breaker, Failure, Open, Pass, Transition};
use crate::config::circuit::CircuitSettings;
use crate::http::body::Body;
use crate::http::error::GatewayError;

/// A request let through a breaker, to be finished with the target's answer.
#[derive(Debug)]
pub(crate) struct Guard {
    pass: Pass,
    settings: CircuitSettings,
}

/// Lets a request to a target through its breaker (`Ok(None)`: the target has none), announcing
/// the move to half-open when this request is the first after `open_for`.
pub(crate) async fn admit(
    gw: &Gateway,
    breaker: Option<Arc<Breaker>>,
    settings: Option<&CircuitSettings>,
) -> Result<Option<Guard>, Open> {
    let (Some(b), Some(s)) = (breaker, settings) else { return Ok(None) };
    let (pass, t) = b.admit(s)?;
    if let Some(t) = t {
        announce(gw, t).await;
    }
    Ok(Some(Guard { pass, settings: *s }))
}

impl Guard {
    /// Reports the target's answer (or failure) to the breaker; an outcome that says nothing of the
    /// target's health (no credential, a shutdown) just gives the pass back.
    pub(crate) async fn finish(self, gw: &Gateway, result: &Result<Response<Body>, GatewayError>) {
        let failure = match result {
            Ok(r) => Failure::of_status(r.status().as_u16(), &self.settings),
            Err(GatewayError::UpstreamUnavailable(_, f)) => Some(*f),
            Err(GatewayError::UpstreamTimeout(_)) => Some(Failure::Timeout),
            Err(_) => return,
        };
        if let Some(t) = self.pass.finish(failure, &self.settings) {
            announce(gw, t).await;
        }
    }
}

/// The 503 for a request refused by an open circuit.
pub(crate) fn refused(target: &str, mcp: bool, open: Open) -> GatewayError {
    GatewayError::CircuitOpen {
        target: target.to_owned(),
        mcp,
        error_class: open.error_class,
        retry_after: open.retry_after,
    }
}

/// Writes a transition to the audit trail (`kind: circuit`, `event: opened | half_open | closed`,
/// which alert routing reads) and the log.
pub(crate) async fn announce(gw: &Gateway, t: Transition) {
    let class = t.error_class.map(Failure::as_str);
    if t.to == crate::circuit::State::Open {
        tracing::warn!(target_kind = t.kind.as_str(), target = %t.target, reason = t.reason, error_class = class,
            consecutive_failures = t.consecutive_failures, failure_rate = t.failure_rate, "circuit opened");
    } else {
        tracing::info!(target_kind = t.kind.as_str(), target = %t.target, reason = t.reason, state = t.to.as_str(),
            "circuit state changed");
    }
    let record = Record::new("circuit")
        .with("event", t.to.event())
        .with("target", &*t.target)
        .with("target_kind", t.kind.as_str())
        .with("reason", t.reason)
        .with_opt("error_class", class)
        .with("consecutive_failures", t.consecutive_failures)
        .with("failure_rate", (t.failure_rate * 1000.0).round() / 1000.0)
        .with("requests_in_window", t.requests);
    gw.audit.record(record).await;
}
