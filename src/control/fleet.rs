//! Fleet routes: `/readyz` (which reports the fleet's degraded reasons) and `GET /admin/v1/fleet`
//! (every replica's heartbeat, lag and policy hash; design §6).

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json;

use super::{error, json_response};
use crate::gateway::Gateway;
use crate::http::body::{full, Body};

/// `/readyz`: 503 while the audit trail cannot be written; otherwise 200 `ready`, or 200
/// `degraded: <reasons>` when fleet mode has problems (a degraded replica still enforces its last
/// snapshot, so it stays in the load balancer). `?strict` turns degraded into a 503.
pub(super) fn readyz(gw: &Gateway, query: Option<&str>) -> Response<Body> {
    let plain = |status: StatusCode, text: String| {
        let mut r = Response::new(full(text));
        *r.status_mut() = status;
        r
    };
    if let Some(why) = gw.audit.failure() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the audit trail cannot be written ({why})\n"),
        );
    }
    let reasons = gw.fleet.as_ref().map(|f| f.degraded()).unwrap_or_default();
    if reasons.is_empty() {
        return plain(StatusCode::OK, "ready\n".into());
    }
    let strict = query.is_some_and(|q| q.split('&').any(|p| p == "strict" || p.starts_with("strict=")));
    let status = if strict { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    plain(status, format!("degraded: {}\n", reasons.join("; ")))
}

/// `GET /admin/v1/fleet`: the replica list (404 on a single node).
pub(super) async fn view(gw: &Arc<Gateway>) -> Response<Body> {
    let Some(fleet) = gw.fleet.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "fleet_off",
            "fleet mode is off: this gateway runs on its own (no [fleet] section in its policy)",
        );
    };
    let bound = fleet.settings.connect_timeout + fleet.settings.statement_timeout;
    let live_after = fleet.settings.live_after;
    let read = async {
        let rows = crate::fleet::replicas::list(&fleet.db, live_after).await?;
        let version = crate::fleet::replicas::db_version(&fleet.db).await?;
        Ok::<_, crate::fleet::FleetError>((rows, version))
    };
    let (rows, db_version) = match tokio::time::timeout(bound, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "fleet_unavailable",
                &format!("cannot read the replica list: {e}"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "fleet_unavailable",
                "cannot read the replica list: PostgreSQL did not answer in time",
            )
        }
    };
    let mut v = crate::fleet::replicas::overview(db_version, &rows, &gw.policy().content_sha256);
    v["this_replica"] = json!(fleet.replica_id);
    v["degraded"] = json!(fleet.degraded());
    json_response(StatusCode::OK, &v)
}
