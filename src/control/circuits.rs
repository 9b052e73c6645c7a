//! `GET /admin/v1/circuits`: every upstream and MCP server with its circuit breaker's state.

use http::{Response, StatusCode};
use serde_json::json;

use super::json_response;
use crate::gateway::Gateway;
use crate::http::body::Body;

/// State, failure rate, consecutive failures, last error class and time in state of each target.
pub(super) fn status(gw: &Gateway) -> Response<Body> {
    let policy = gw.policy();
    json_response(StatusCode::OK, &json!({ "circuits": gw.circuits.status(&policy) }))
}
