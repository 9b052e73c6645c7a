//! The admin API: thin routes over the switch store, the policy reload and the audit trail, on a
//! listener of its own, behind a bearer token compared in constant time.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::audit::Record;
use crate::config::Secret;
use crate::gateway::Gateway;
use crate::http::body::{full, Body};
use crate::state::{ApplyError, Batch};
use identity::{Identity, Role};

mod alerts;
mod circuits;
pub mod console;
mod fleet;
mod forensics;
pub mod identity;
mod local;
mod lockout;
mod mcp_verify;
mod pending;
mod prompts;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 1 << 20;

/// Why an admin API caller was not authenticated.
enum Unauthenticated {
    /// 401 (or 503 with no identity configured).
    Refused(identity::Refusal),
    /// 429: the address is locked out for this much longer.
    LockedOut(std::time::Duration),
}

/// The admin side of a running gateway.
#[derive(Debug)]
pub struct Admin {
    gw: Arc<Gateway>,
    admins: identity::Admins,
    pending: pending::PendingStore,
    console: console::Console,
    auth_failures: lockout::AuthFailures,
}

impl Admin {
    /// Admin API over `gw`; with no token every protected route answers 503 (fail closed).
    pub fn new(gw: Arc<Gateway>, token: Option<Secret>) -> Arc<Admin> {
        Arc::new(Admin {
            gw,
            admins: identity::Admins::new(token.as_ref()),
            pending: Default::default(),
            console: console::Console::default(),
            auth_failures: lockout::AuthFailures::default(),
        })
    }

    /// The caller of `req` under the policy in force: an `[[admins]]` identity or the legacy token's.
    pub fn authenticate<B>(&self, req: &Request<B>) -> Result<identity::Identity, identity::Refusal> {
        self.admins.authenticate(&self.gw.policy().admins, req)
    }

    /// [`Admin::authenticate`] under the lockout ([`lockout`]): a locked-out address's bearer tokens
    /// are refused (429) without being checked, and every refusal is counted and audited.
    fn authenticate_counted<B>(
        &self,
        req: &Request<B>,
        method: &Method,
        path: &str,
    ) -> Result<Identity, Unauthenticated> {
        let source = lockout::Source::of(req.extensions().get::<crate::http::peer::Peer>());
        if req.headers().contains_key(header::AUTHORIZATION) {
            if let Some(left) = self.locked_out(source) {
                return Err(Unauthenticated::LockedOut(left));
            }
        }
        self.authenticate(req).map_err(|r| {
            if let Some(f) = r.failure {
                self.auth_failed(source, f, &format!("{method} {path}"));
            }
            Unauthenticated::Refused(r)
        })
    }

    /// How much longer `source` is locked out, if it is.
    fn locked_out(&self, source: lockout::Source) -> Option<std::time::Duration> {
        self.auth_failures.locked_out(source, &self.gw.policy().admins.lockout)
    }

    /// Counts a refused authentication from `source` on `route`; audits it (and the lockout it
    /// starts) within the shared audit budget, unless the source is already locked out. The record
    /// names the address and the reason, never the credential.
    fn auth_failed(&self, source: lockout::Source, why: lockout::Failure, route: &str) {
        let limits = self.gw.policy().admins.lockout;
        let (n, lockout) = match self.auth_failures.failed(source, why, &limits) {
            lockout::Counted::Quiet => return,
            lockout::Counted::Failure { n } => (n, None),
            lockout::Counted::LockedOut { n, for_ } => (n, Some(for_)),
        };
        // The path is the caller's text: kept short.
        let route = match route.char_indices().nth(160) {
            Some((i, _)) => &route[..i],
            None => route,
        };
        let peer = source.to_string_for_audit();
        let mut records = Vec::new();
        if self.auth_failures.may_audit() {
            tracing::warn!(peer = %peer, reason = why.as_str(), route, failures = n, "admin authentication refused");
            let r = Record::new("admin")
                .with("event", "auth_failed")
                .with("peer", peer.as_str())
                .with("reason", why.as_str())
                .with("route", route);
            records.push(if n > 0 { r.with("failures", n) } else { r });
        }
        if let Some(left) = lockout.filter(|_| self.auth_failures.may_audit()) {
            tracing::warn!(peer = %peer, failures = n, seconds = left.as_secs(), "admin authentication locked out for this address");
            records.push(
                Record::new("admin")
                    .with("event", "auth_locked_out")
                    .with("peer", peer.as_str())
                    .with("failures", n)
                    .with("window_seconds", limits.window.as_secs())
                    .with("seconds", left.as_secs().max(1)),
            );
        }
        if records.is_empty() {
            return;
        }
        // Queued, not awaited on disk: a refusal waits for nobody, and the shared budget bounds how
        // many records (and tasks) refusals can cause.
        let audit = self.gw.audit.clone();
        tokio::spawn(async move {
            for r in records {
                audit.record(r).await;
            }
        });
    }

    /// The handler for [`crate::server::serve`].
    pub fn handler(
        self: &Arc<Self>,
    ) -> impl Fn(Request<Incoming>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>>
           + Clone
           + Send
           + Sync
           + 'static {
        let me = self.clone();
        move |req| {
            let me = me.clone();
            Box::pin(async move { me.route(req).await })
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => return fleet::readyz(&self.gw, req.uri().query()),
            (_, p) if p == "/console" || p.starts_with("/console/") => return self.console(req).await,
            _ => {}
        }
        // A console session (cookie; the CSRF token on every change) or the token / mTLS identity.
        let who = match self.console_auth(&req) {
            console::ApiAuth::Session(w) => w,
            console::ApiAuth::Refused(r) => return r,
            console::ApiAuth::NotConsole => match self.authenticate_counted(&req, &method, &path) {
                Ok(w) => w,
                Err(Unauthenticated::Refused(r)) => return r.response(),
                Err(Unauthenticated::LockedOut(left)) => return locked_out(left),
            },
        };
        let needed = identity::required_role(&method, &path).unwrap_or(Role::Admin);
        if who.role < needed {
            return self.refuse(&who, needed, &format!("{method} {path}")).await;
        }
        // Every change is audited durably before it is acknowledged: while the trail cannot be
        // written, no change is made at all (`switches` also refuses to acknowledge one whose record
        // fails after it was applied).
        if method == Method::POST {
            if let Some(why) = self.gw.audit.failure() {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_unavailable",
                    &format!("the audit trail cannot be written ({why}); nothing was changed: a change is made only when its audit record can be made durable. Free the disk (see /readyz) and retry"),
                );
            }
        }
        match (&method, path.as_str()) {
            (&Method::GET, "/metrics") => {
                let mut text = self.gw.metrics.render()
                    + &self.gw.circuits.render_metrics()
                    + &self.auth_failures.render_metrics();
                if let Some(f) = &self.gw.fleet {
                    text.push_str(&f.render_metrics());
                }
                let mut r = Response::new(full(text));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4"));
                r
            }
            (&Method::GET, "/admin/v1/whoami") => {
                json_response(StatusCode::OK, &json!({"id": who.id, "role": who.role.as_str()}))
            }
            (&Method::GET, "/admin/v1/state") => self.state(),
            (&Method::GET, "/admin/v1/tools/pending") => self.pending_tools(),
            (&Method::POST, "/admin/v1/switches") => self.switches(req, &who).await,
            (&Method::POST, "/admin/v1/local/switches") => self.local_set(req, &who).await,
            (&Method::DELETE, "/admin/v1/local/switches") => self.local_lift(None, &who).await,
            (&Method::DELETE, p) if p.starts_with("/admin/v1/local/switches/") => {
                let id = p.trim_start_matches("/admin/v1/local/switches/").to_owned();
                self.local_lift(Some(id), &who).await
            }
            (&Method::POST, "/admin/v1/policy/reload") => self.reload(req.uri().query(), &who).await,
            // The two-person rule (pending.rs).
            (&Method::GET, "/admin/v1/pending") => self.pending_list(),
            (&Method::POST, p) if p.starts_with("/admin/v1/pending/") && p.ends_with("/approve") => {
                let id = p.trim_start_matches("/admin/v1/pending/").trim_end_matches("/approve").to_owned();
                self.pending_approve(&id, &who).await
            }
            (&Method::POST, p) if p.starts_with("/admin/v1/pending/") && p.ends_with("/reject") => {
                let id = p.trim_start_matches("/admin/v1/pending/").trim_end_matches("/reject").to_owned();
                self.pending_reject(&id, &who).await
            }
            (&Method::GET, "/admin/v1/circuits") => circuits::status(&self.gw),
            (&Method::GET, "/admin/v1/fleet") => fleet::view(&self.gw).await,
            (&Method::GET, p) if p.starts_with("/admin/v1/mcp/servers/") && p.ends_with("/verify") => {
                let server = p.trim_start_matches("/admin/v1/mcp/servers/").trim_end_matches("/verify").to_owned();
                mcp_verify::verify(&self.gw, &server).await
            }
            (&Method::GET, "/admin/v1/decisions/stream") => self.decision_stream(),
            (&Method::GET, "/admin/v1/audit/verify") => self.audit_verify().await,
            (&Method::POST, p) if p.starts_with("/admin/v1/incidents/") && p.ends_with("/checklist") => {
                let id = p.trim_start_matches("/admin/v1/incidents/").trim_end_matches("/checklist").to_owned();
                self.tick(req, id, &who).await
            }
            (&Method::GET, "/admin/v1/audit") => self.audit(req.uri().query()).await,
            (&Method::GET, "/admin/v1/incidents") => self.incidents(req.uri().query()).await,
            (&Method::GET, p) if forensics::export_id(p).is_some() => {
                let id = forensics::export_id(p).unwrap_or_default().to_owned();
                self.export(&id, req.uri().query(), &who).await
            }
            (&Method::GET, p) if p.starts_with("/admin/v1/incidents/") => {
                let id = p.trim_start_matches("/admin/v1/incidents/");
                match crate::gateway::incidents::get(&self.gw, id).await {
                    Some(i) => json_response(StatusCode::OK, &json!({ "incident": i })),
                    None => error(StatusCode::NOT_FOUND, "unknown_incident", &format!("no incident `{id}`")),
                }
            }
            (&Method::POST, p) if p.starts_with("/admin/v1/incidents/") && p.ends_with("/resolve") => {
                let id = p.trim_start_matches("/admin/v1/incidents/").trim_end_matches("/resolve").to_owned();
                self.resolve(req, id, &who).await
            }
            (&Method::POST, p) if p.starts_with("/admin/v1/playbooks/") => {
                let plan = p.trim_start_matches("/admin/v1/playbooks/").to_owned();
                self.playbook(req, plan, &who).await
            }
            (&Method::POST, "/admin/v1/rotate/credentials") => self.rotate_credentials(req, None, &who).await,
            (&Method::GET, "/admin/v1/alerts") => self.alerts(req.uri().query()).await,
            (&Method::POST, p) if p.starts_with("/admin/v1/alerts/test/") => {
                let sink = p.trim_start_matches("/admin/v1/alerts/test/").to_owned();
                self.alerts_test(req, sink, &who).await
            }
            (&Method::POST, p) if p.starts_with("/admin/v1/rotate/prompt/") => {
                let id = p.trim_start_matches("/admin/v1/rotate/prompt/").to_owned();
                self.rotate_prompt(req, id, prompts::Rotate::Prompt, &who).await
            }
            (&Method::POST, p) if p.starts_with("/admin/v1/rotate/canary/") => {
                let id = p.trim_start_matches("/admin/v1/rotate/canary/").to_owned();
                self.rotate_prompt(req, id, prompts::Rotate::Canary, &who).await
            }
            (&Method::POST, p) if p.starts_with("/admin/v1/rotate/credential/") => {
                let name = p.trim_start_matches("/admin/v1/rotate/credential/").to_owned();
                self.rotate_credentials(req, Some(name), &who).await
            }
            _ => error(StatusCode::NOT_FOUND, "not_found", &format!("no admin route {method} {path}")),
        }
    }

    /// The 403 for `who` lacking `needed` for `what`, audited (kind `admin`, event `refused`).
    async fn refuse(&self, who: &Identity, needed: Role, what: &str) -> Response<Body> {
        let r = identity::forbidden(who, needed, what);
        let record = Record::new("admin")
            .with("event", "refused")
            .with("actor", who.id.as_str())
            .with("role", who.role.as_str())
            .with("required_role", needed.as_str())
            .with("route", what);
        // Durable before the answer, like every admin change: a refusal is evidence too.
        if let Err(e) = self.gw.audit.record_durable(record).await {
            tracing::error!(error = %e, "the audit record of an admin refusal failed");
        }
        tracing::warn!(actor = %who.id, role = %who.role, required = %needed, what, "admin request refused: role too low");
        json_response(
            r.status,
            &json!({"error": {"code": r.code, "message": r.message, "required_role": needed.as_str(), "role": who.role.as_str()}}),
        )
    }

    fn state(&self) -> Response<Body> {
        let snap = self.gw.state.load();
        let policy = self.gw.policy();
        let mut v = serde_json::to_value(&*snap).unwrap_or(Value::Null);
        v["policy"] = json!({ "source": policy.source.display().to_string() });
        v["level_settings"] = {
            let l = policy.levels.get(snap.level);
            json!({"requests_per_minute": l.requests_per_minute, "model": l.model})
        };
        json_response(StatusCode::OK, &v)
    }

    /// MCP tool definitions waiting for approval: each in full, with the trusted one, a line diff
    /// between them, why it is pending, and the hash to approve (or reject) it by.
    fn pending_tools(&self) -> Response<Body> {
        let snap = self.gw.state.load();
        let pending: Vec<Value> = snap
            .tool_pins
            .iter()
            .filter_map(|(key, pin)| {
                let hash = pin.pending.as_deref()?;
                let (server, tool) = key.split_once('/').unwrap_or((key.as_str(), ""));
                let rule = pin.pending_reason.as_deref().unwrap_or("mcp.tool_changed");
                let reason = rule.strip_prefix("mcp.tool_").unwrap_or(rule);
                let diff = pin
                    .pending_definition
                    .as_ref()
                    .map(|d| crate::mcp::tools::definition_diff(pin.definition.as_ref(), d));
                Some(json!({
                    "tool": key,
                    "server": server,
                    "name": tool,
                    "reason": reason,
                    "rule": rule,
                    "hash": hash,
                    "since": pin.pending_since,
                    "definition": pin.pending_definition,
                    "pinned_hash": pin.hash,
                    "pinned_since": pin.since,
                    "pinned_definition": pin.definition,
                    "diff": diff,
                }))
            })
            .collect();
        json_response(StatusCode::OK, &json!({ "pending": pending, "version": snap.version }))
    }

    /// `POST /admin/v1/switches`: the caller's role must cover every action; the audit actor is the
    /// caller (a client-sent `actor` is kept as `on_behalf_of`); a batch naming an
    /// `[admin.require_second]` action is held for a second approval instead (pending.rs).
    async fn switches(&self, req: Request<Incoming>, who: &Identity) -> Response<Body> {
        // The verified mTLS client identity of the connection, if any ([listen] admin_tls).
        let tls_identity = req.extensions().get::<crate::http::peer::Peer>().and_then(|p| p.tls_identity.clone());
        let wait = match local::wait_all(req.uri().query(), self.gw.fleet.as_deref()) {
            Ok(w) => w,
            Err(r) => return *r,
        };
        let bytes = match read(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let mut batch: Batch = match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_batch",
                    &format!("the batch is not valid: {e}; see README \"Switches\" for the format"),
                )
            }
        };
        let needed = identity::batch_role(&batch.actions);
        if who.role < needed {
            let ops: Vec<String> = batch
                .actions
                .iter()
                .filter(|a| identity::action_role(a) > who.role)
                .map(|a| identity::action_arg(a).0)
                .collect();
            return self.refuse(who, needed, &format!("POST /admin/v1/switches with {}", ops.join(", "))).await;
        }
        let on_behalf_of = batch.actor.replace(who.id.clone()).filter(|a| *a != who.id);
        let batch = match self.hold_if_needed(pending::Held::Switches(batch), who, on_behalf_of.as_deref()).await {
            Ok(pending::Held::Switches(b)) => b,
            Ok(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "held the wrong kind of request"),
            Err(answer) => return answer,
        };
        self.apply_switches_wait(batch, on_behalf_of.as_deref(), None, tls_identity.as_deref(), wait).await
    }

    /// Applies a switch batch whose `actor` is the authenticated identity (the requester's, for an
    /// approved pending batch) and audits it.
    async fn apply_switches(
        &self,
        batch: Batch,
        on_behalf_of: Option<&str>,
        approval: Option<pending::Approval<'_>>,
        tls_identity: Option<&str>,
    ) -> Response<Body> {
        self.apply_switches_wait(batch, on_behalf_of, approval, tls_identity, None).await
    }

    /// [`Admin::apply_switches`]; in fleet mode with `?wait=all`, waits (at most `wait`) after the
    /// commit until every live replica has applied the new version, and says so in `fleet`.
    async fn apply_switches_wait(
        &self,
        batch: Batch,
        on_behalf_of: Option<&str>,
        approval: Option<pending::Approval<'_>>,
        tls_identity: Option<&str>,
        wait: Option<std::time::Duration>,
    ) -> Response<Body> {
        match self.gw.apply(&batch).await {
            Ok(applied) => {
                let actor = batch.actor.as_deref().unwrap_or(identity::LEGACY_ID);
                let mut record = Record::new("switch")
                    .with("actor", actor)
                    .with_opt("on_behalf_of", on_behalf_of)
                    .with("reason", batch.reason.as_str())
                    .with("before_version", applied.before)
                    .with("after_version", applied.after.version)
                    .with("actions", serde_json::to_value(&batch.actions).unwrap_or(Value::Null))
                    .with_opt("tls_identity", tls_identity);
                if let Some(a) = approval {
                    record = a.add_to(record);
                }
                self.gw.metrics.set_switch_version(applied.after.version);
                let audit_seq = match self.gw.audit.record_durable(record).await {
                    Ok(seq) => seq,
                    Err(e) => {
                        tracing::error!(error = %e, version = applied.after.version, "switch change applied but its audit record could not be made durable; not acknowledged");
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "audit_failed",
                            &format!("the change was applied (version {}) but its audit record could not be made durable ({e}); it is held and written when the disk recovers. Check GET /admin/v1/state before retrying", applied.after.version),
                        );
                    }
                };
                tracing::info!(actor, before = applied.before, after = applied.after.version, "switches applied");
                let mut body = json!({
                    "applied": true,
                    "before_version": applied.before,
                    "version": applied.after.version,
                    "audit_seq": audit_seq,
                    "approved_by": approval.map(|a| a.approved_by),
                    "state": &*applied.after,
                });
                if let (Some(timeout), Some(fleet)) = (wait, &self.gw.fleet) {
                    let waited = fleet.wait_all(applied.after.version, timeout).await;
                    body["fleet"] = serde_json::to_value(&waited).unwrap_or(Value::Null);
                }
                json_response(StatusCode::OK, &body)
            }
            Err(e) => apply_error(e),
        }
    }

    /// Re-reads provider and MCP-server credentials from their sources and swaps them in: requests in
    /// flight finish with the old value, the next request uses the new one. One name, or every
    /// upstream and server that has a source (the mass-compromise playbook).
    async fn rotate_credentials(&self, req: Request<Incoming>, only: Option<String>, who: &Identity) -> Response<Body> {
        let (on_behalf_of, reason, _) = match rotation_meta(req).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        use crate::gateway::fleet::commands as fleet_commands;
        let done = match fleet_commands::rotate_credentials(&self.gw, only.as_deref()) {
            Ok(d) => d,
            Err(m) => return error(StatusCode::NOT_FOUND, "unknown_upstream", &m),
        };
        let mine = done.to_json();
        // Fleet mode: every replica rotates too (a fleet command); this call waits for their results.
        let fleet = fleet_commands::issue_and_wait(
            &self.gw,
            crate::fleet::commands::Kind::RotateCredentials,
            only.as_deref(),
            &who.id,
            &reason,
            (done.failed.is_empty(), &mine),
        )
        .await;
        let record = Record::new("rotation")
            .with("event", "credential")
            .with("actor", who.id.as_str())
            .with_opt("on_behalf_of", on_behalf_of.as_deref())
            .with("reason", reason.as_str())
            .with("rotated", done.rotated.clone())
            .with_opt("failed", (!done.failed.is_empty()).then(|| Value::Object(done.failed.clone())))
            .with_opt("fleet_command", fleet.as_ref().and_then(|(id, _)| *id));
        if let Err(e) = self.gw.audit.record_durable(record).await {
            tracing::error!(error = %e, "credentials rotated but the audit record failed");
        }
        tracing::warn!(actor = %who.id, rotated = ?done.rotated, failed = done.failed.len(), "credentials rotated");
        let status = if done.failed.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
        let mut body = mine;
        if let Some((_, f)) = fleet {
            body["fleet"] = f;
        }
        json_response(status, &body)
    }

    async fn incidents(&self, query: Option<&str>) -> Response<Body> {
        let open_only = query.unwrap_or("").split('&').any(|p| p == "status=open");
        let listing = crate::gateway::incidents::list(&self.gw, open_only).await;
        let mut body = json!({ "incidents": listing.incidents });
        if let Some(d) = listing.degraded {
            body["degraded"] = Value::from(d);
        }
        json_response(StatusCode::OK, &body)
    }

    async fn resolve(&self, req: Request<Incoming>, id: String, who: &Identity) -> Response<Body> {
        let bytes = match read(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let meta: Value =
            if bytes.is_empty() { json!({}) } else { serde_json::from_slice(&bytes).unwrap_or(json!({})) };
        let on_behalf_of = meta.get("actor").and_then(Value::as_str).filter(|a| *a != who.id);
        let note = meta.get("note").and_then(Value::as_str).unwrap_or("");
        match crate::gateway::incidents::resolve(&self.gw, &id, &who.id, on_behalf_of, note).await {
            Ok(i) => json_response(StatusCode::OK, &json!({ "incident": i })),
            Err(e @ crate::incident::IncidentError::NotFound(_)) => {
                error(StatusCode::NOT_FOUND, "unknown_incident", &e.to_string())
            }
            Err(e @ crate::incident::IncidentError::Unavailable(_)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, "fleet_unavailable", &e.to_string())
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", &e.to_string()),
        }
    }

    /// `POST /admin/v1/incidents/{id}/checklist` `{"step": n, "done": true|false}`: ticks (or
    /// unticks) a checklist step.
    async fn tick(&self, req: Request<Incoming>, id: String, who: &Identity) -> Response<Body> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Tick {
            step: usize,
            #[serde(default = "yes")]
            done: bool,
        }
        fn yes() -> bool {
            true
        }
        let bytes = match read(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let t: Tick = match serde_json::from_slice(&bytes) {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    &format!("expected {{\"step\": 0, \"done\": true}}: {e}"),
                )
            }
        };
        match crate::gateway::incidents::tick(&self.gw, &id, t.step, t.done, &who.id).await {
            Ok(i) => json_response(StatusCode::OK, &json!({ "incident": i })),
            Err(e @ crate::incident::IncidentError::NotFound(_)) => {
                error(StatusCode::NOT_FOUND, "unknown_incident", &e.to_string())
            }
            Err(e @ crate::incident::IncidentError::Unavailable(_)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, "fleet_unavailable", &e.to_string())
            }
            Err(e @ crate::incident::IncidentError::NoStep(..)) => {
                error(StatusCode::BAD_REQUEST, "unknown_step", &e.to_string())
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", &e.to_string()),
        }
    }

    /// `GET /admin/v1/audit/verify`: `audit verify` of the live trail with the gateway's keys.
    async fn audit_verify(&self) -> Response<Body> {
        let policy = self.gw.policy();
        let path = policy.storage.audit_file.clone();
        let mut sources = vec![policy
            .audit
            .key
            .clone()
            .unwrap_or_else(|| crate::config::TokenSource::File(crate::audit::default_key_path(&path)))];
        sources.extend(policy.audit.previous_key.clone());
        // Records still queued are written first, so the file and its head agree.
        let _ = self.gw.audit.flush().await;
        let r = tokio::task::spawn_blocking(move || {
            let keys = sources.iter().map(crate::audit::AuditKey::load).collect::<Result<Vec<_>, _>>()?;
            let opts = crate::audit::VerifyOptions { keys, allow_missing_head: false };
            // A record written between reading the file and its head reads as a mismatch: try again.
            let mut last = Err(String::new());
            for _ in 0..3 {
                last = crate::audit::verify(&path, &opts).map_err(|e| e.to_string());
                if last.is_ok() {
                    break;
                }
            }
            last
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        json_response(StatusCode::OK, &console::verify_json(&r))
    }

    /// Runs a containment plan by hand for a principal, as one atomic batch.
    async fn playbook(&self, req: Request<Incoming>, plan: String, who: &Identity) -> Response<Body> {
        // No deny_unknown_fields: serde does not support it together with flatten.
        #[derive(serde::Deserialize)]
        struct Run {
            #[serde(flatten)]
            target: crate::incident::Target,
            reason: String,
            #[serde(default)]
            actor: Option<String>,
        }
        let bytes = match read(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let run: Run = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_playbook_run",
                    &format!("expected {{\"user\"|\"tenant\"|\"session\", \"reason\"}}: {e}"),
                )
            }
        };
        if run.reason.trim().is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "reason_required",
                "give a reason: it is recorded in the audit trail",
            );
        }
        let policy = self.gw.policy();
        let reason = with_on_behalf_of(&run.reason, run.actor.as_deref().filter(|a| *a != who.id));
        let expanded = match crate::gateway::incidents::expand_plan(&self.gw, &policy, &plan, &run.target, false) {
            Ok(e) => e,
            Err(e) => return plan_response(&plan, Err(e)),
        };
        // A plan run by hand is held like a batch when its actions need a second identity.
        let batch = Batch {
            actions: expanded.actions.clone(),
            reason: reason.clone(),
            actor: Some(who.id.clone()),
            expect_version: None,
        };
        let expanded = match self.hold_if_needed(pending::Held::Plan { expanded, batch }, who, None).await {
            Ok(pending::Held::Plan { expanded, .. }) => expanded,
            Ok(_) => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "a held plan came back as something else")
            }
            Err(r) => return r,
        };
        self.apply_playbook(expanded, &reason, &who.id, None).await
    }

    /// Applies an expanded plan run by `actor` (approved by a second identity when `approval`).
    async fn apply_playbook(
        &self,
        expanded: crate::gateway::incidents::Expanded,
        reason: &str,
        actor: &str,
        approval: Option<pending::Approval<'_>>,
    ) -> Response<Body> {
        let plan = expanded.plan.clone();
        let mark = |r: Record| match approval {
            Some(a) => a.add_to(r),
            None => r,
        };
        plan_response(&plan, crate::gateway::incidents::apply_plan(&self.gw, expanded, reason, actor, None, mark).await)
    }

    /// `POST /admin/v1/policy/reload[?all=true]`: with `all` in fleet mode, every replica reloads its
    /// own file too (a fleet command) and the answer carries each one's result.
    async fn reload(&self, query: Option<&str>, who: &Identity) -> Response<Body> {
        let all = query.unwrap_or("").split('&').any(|p| p == "all" || p == "all=true" || p == "all=1");
        let reloaded = self.gw.reload(&who.id).await;
        let fleet = if all {
            let own = crate::gateway::fleet::commands::reload_result(&reloaded);
            crate::gateway::fleet::commands::issue_and_wait(
                &self.gw,
                crate::fleet::commands::Kind::Reload,
                None,
                &who.id,
                "admin reload --all",
                (own.0, &own.1),
            )
            .await
            .map(|(_, f)| f)
        } else {
            None
        };
        let (status, mut body) = reload_answer(reloaded);
        if let Some(f) = fleet {
            body["fleet"] = f;
        }
        json_response(status, &body)
    }
}

/// The answer to a reload on this replica.
fn reload_answer(reloaded: Result<Arc<crate::config::Policy>, crate::gateway::ReloadError>) -> (StatusCode, Value) {
    match reloaded {
        Ok(p) => {
            for w in &p.incidents.warnings {
                tracing::warn!(warning = %w, "policy reloaded with a risky setting");
            }
            (
                StatusCode::OK,
                json!({"reloaded": true, "source": p.source.display().to_string(), "policy_hash": p.content_sha256, "warnings": p.incidents.warnings}),
            )
        }
        Err(e) => {
            let problems: Vec<Value> = match &e {
                crate::gateway::ReloadError::Invalid(pe) => {
                    pe.0.iter().map(|l| serde_json::to_value(l).unwrap_or(Value::Null)).collect()
                }
                crate::gateway::ReloadError::Tls(m) => vec![json!({"message": m})],
                crate::gateway::ReloadError::Canaries(a) => vec![json!({"message": a.to_string()})],
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": {
                    "code": "policy_rejected",
                    "message": "the new policy is invalid; the old one stays in force",
                    "problems": problems}}),
            )
        }
    }
}

impl Admin {
    async fn audit(&self, query: Option<&str>) -> Response<Body> {
        let q = match console::audit::AuditQuery::parse(query.unwrap_or("")) {
            Ok(q) => q,
            Err(m) => {
                let code = if m.starts_with("since") || m.starts_with("until") {
                    "invalid_since"
                } else if m.starts_with("limit") {
                    "invalid_limit"
                } else {
                    "unknown_parameter"
                };
                return error(StatusCode::BAD_REQUEST, code, &m);
            }
        };
        let path = self.gw.policy().storage.audit_file.clone();
        match tokio::task::spawn_blocking(move || {
            crate::audit::read_matching(&path, q.since, q.limit, |r| q.matches(r))
        })
        .await
        {
            Ok(Ok(records)) => json_response(StatusCode::OK, &json!({"records": records})),
            Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "audit_read_failed", &e.to_string()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "audit_read_failed", &e.to_string()),
        }
    }
}

/// Parses `since`: RFC 3339, or a duration meaning "that long ago".
pub fn parse_since(v: &str) -> Option<std::time::SystemTime> {
    let v = v.replace("%3A", ":").replace("%3a", ":");
    humantime::parse_rfc3339_weak(&v)
        .ok()
        .or_else(|| humantime::parse_duration(&v).ok().and_then(|d| std::time::SystemTime::now().checked_sub(d)))
}

/// `{"reason": …, "actor"?, "expect_version"?}` of a rotation request: (the client-sent actor, which
/// is only ever `on_behalf_of`; reason; expect_version), or the error answer. A reason is required
/// (it goes into the audit trail).
async fn rotation_meta(req: Request<Incoming>) -> Result<(Option<String>, String, Option<u64>), Response<Body>> {
    let bytes = read(req).await?;
    let meta: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            error(StatusCode::BAD_REQUEST, "invalid_body", &format!("expected {{\"reason\": \"…\"}}: {e}"))
        })?
    };
    let actor = meta.get("actor").and_then(Value::as_str).map(str::to_owned);
    let reason = meta.get("reason").and_then(Value::as_str).unwrap_or("").to_owned();
    if reason.trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "reason_required",
            "give a reason: it is recorded in the audit trail",
        ));
    }
    Ok((actor, reason, meta.get("expect_version").and_then(Value::as_u64)))
}

/// Where a record has no field of its own for it (a plan run's reason), a client-sent actor is
/// kept in the text: `… (on behalf of X)`. The actor is always the
/// authenticated identity.
fn with_on_behalf_of(text: &str, on_behalf_of: Option<&str>) -> String {
    match on_behalf_of {
        Some(o) => format!("{text} (on behalf of {o})"),
        None => text.to_owned(),
    }
}

/// The response to a batch that was not applied.
fn apply_error(e: ApplyError) -> Response<Body> {
    match e {
        ApplyError::Conflict { expected, current } => json_response(
            StatusCode::CONFLICT,
            &json!({"error": {
            "code": "version_conflict",
            "message": format!("expected version {expected}, current is {current}; re-read the state and retry"),
            "current_version": current}}),
        ),
        ApplyError::Stale(errors) => json_response(
            StatusCode::CONFLICT,
            &json!({"error": {
            "code": "definition_changed",
            "message": "the definition you reviewed is no longer the one pending; nothing changed",
            "problems": errors}}),
        ),
        ApplyError::Invalid(errors) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {
            "code": "invalid_batch",
            "message": "the batch was rejected whole; nothing changed",
            "problems": errors}}),
        ),
        e @ ApplyError::Persist(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", &e.to_string()),
        ApplyError::Fleet(f) if f.unknown => error(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", &f.message),
        ApplyError::Fleet(f) => error(StatusCode::SERVICE_UNAVAILABLE, "fleet_unavailable", &f.message),
    }
}

async fn read(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_ADMIN_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "admin request bodies are limited to 1 MiB")),
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": {"code": code, "message": message}}))
}

/// The answer to a plan run.
fn plan_response(plan: &str, result: Result<crate::incident::Taken, crate::incident::PlanError>) -> Response<Body> {
    use crate::incident::PlanError;
    match result {
        // Applied, but not durably audited: not acknowledged (see `switches`).
        Ok(taken) if taken.error.is_some() => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_failed",
            &format!(
                "the plan was applied (version {}) but {}; check GET /admin/v1/state before retrying",
                taken.version.unwrap_or_default(),
                taken.error.as_deref().unwrap_or_default()
            ),
        ),
        Ok(taken) => json_response(StatusCode::OK, &json!({"applied": true, "plan": plan, "taken": taken})),
        Err(e @ PlanError::Unknown(..)) => error(StatusCode::NOT_FOUND, "unknown_plan", &e.to_string()),
        Err(PlanError::Apply(ApplyError::Invalid(errors))) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"code": "invalid_batch", "message": "the plan's batch was rejected whole; nothing changed", "problems": errors}}),
        ),
        Err(e @ PlanError::Apply(ApplyError::Persist(_))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "persist_failed", &e.to_string())
        }
        Err(PlanError::Apply(e @ (ApplyError::Fleet(_) | ApplyError::Conflict { .. }))) => apply_error(e),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_playbook_run", &e.to_string()),
    }
}

/// The 429 for a locked-out address, with `Retry-After`.
fn locked_out(left: std::time::Duration) -> Response<Body> {
    let secs = left.as_secs().max(1);
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "auth_locked_out",
        &format!("too many wrong admin tokens from this address; token attempts are refused for {secs} more seconds (a verified admin client certificate still gets in; see [admin] max_auth_failures)"),
    );
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    r
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut r = Response::new(full(s));
    *r.status_mut() = status;
    r
}
