//! `GET /admin/v1/mcp/servers/<server>/verify`: the gateway lists the server's tools itself (with the
//! server's credential) and reports each tool's pin standing and description checks. Read-only: no
//! pin is recorded, unlike a client's `tools/list` through the gateway.

use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::json;

use super::{error, json_response};
use crate::gateway::Gateway;
use crate::http::body::Body;
use crate::mcp::verify;

pub(super) async fn verify(gw: &Gateway, server: &str) -> Response<Body> {
    let active = gw.active.load_full();
    let policy = &active.policy;
    let Some(srv) = policy.mcp.servers.get(server) else {
        let known: Vec<&str> = policy.mcp.servers.keys().map(String::as_str).collect();
        return error(
            StatusCode::NOT_FOUND,
            "unknown_server",
            &format!("no MCP server `{server}` in the policy; servers: {}", known.join(", ")),
        );
    };
    // A client of its own: the request path's clients belong to the proxy shards.
    let client = match crate::http::outbound::new_client(srv.extra_ca.as_deref(), &policy.limits) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "tls", &e),
    };
    let limits = verify::Limits {
        timeout: policy.limits.upstream_timeout.min(Duration::from_secs(30)),
        max_bytes: policy.limits.max_response_body,
    };
    match verify::list_tools(&client, srv, limits).await {
        Ok(tools) => {
            let report = verify::assess(policy, &gw.state.load(), srv, &tools);
            json_response(StatusCode::OK, &json!(report))
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "server_unreachable", &format!("MCP server `{server}`: {e}")),
    }
}
