//! Who is calling the admin API, and what they may do.
//!
//! An operator is authenticated by a bearer token (an `[[admins]]` entry's `sha256`, or the legacy
//! `[admin] token_env`/`token_file` token, which is the identity `admin` with the `admin` role) or,
//! with no `Authorization` header, by the verified mTLS client certificate of the connection
//! (`Peer::tls_identity`, matched against `cert_identity`). A token that is sent must be right: a
//! wrong token is refused even on a connection with a known certificate.
//!
//! Every route needs a [`Role`] ([`required_role`]); a switch batch needs the highest role of its
//! actions ([`batch_role`]: tool approvals and rejections need `admin`).
//!
//! ```ignore
//! let who = admin.authenticate(&req)?;               // Identity { id: "alice", role: Responder }
//! let needed = required_role(req.method(), req.uri().path()).unwrap_or(Role::Admin);
//! if who.role < needed { return forbidden(&who, needed, path).response(); }
//! ```

use http::{header, Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::lockout::Failure;
pub use crate::config::admins::AdminRole as Role;
use crate::config::admins::{ActionPattern, Admins as Directory};
use crate::config::Secret;
use crate::http::body::Body;
use crate::state::Action;

/// The id of the legacy `[admin] token_env`/`token_file` token.
pub const LEGACY_ID: &str = "admin";

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who (recorded as the audit actor).
    pub id: String,
    /// What they may do.
    pub role: Role,
}

/// Why a request is refused: status, error code and a message that never contains a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403 or 503.
    pub status: StatusCode,
    /// `unauthorized`, `forbidden`, `admin_token_unset`.
    pub code: &'static str,
    /// What to do about it.
    pub message: String,
    /// For a 401: which kind of failed authentication (counted towards the lockout).
    pub failure: Option<Failure>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, code, message: message.into(), failure: None }
    }

    /// A 401 for a failed authentication.
    fn unauthorized(failure: Failure, message: impl Into<String>) -> Refusal {
        Refusal { failure: Some(failure), ..Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", message) }
    }

    /// The JSON error answer: `{"error":{"code","message"}}` (403s also name `required_role` and `role`).
    pub fn response(&self) -> Response<Body> {
        super::error(self.status, self.code, &self.message)
    }
}

/// The 403 for `who` lacking `needed` on `what` (a route or an action).
pub fn forbidden(who: &Identity, needed: Role, what: &str) -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{what} needs role {needed}; you are {} ({})", who.role, who.id),
    )
}

/// Authenticates admin API callers against the policy's `[[admins]]` and the legacy token.
#[derive(Debug, Clone, Default)]
pub struct Admins {
    legacy: Option<[u8; 32]>,
}

impl Admins {
    /// With the legacy `[admin]` token, if one was read at start.
    pub fn new(legacy_token: Option<&Secret>) -> Admins {
        Admins { legacy: legacy_token.map(|t| Sha256::digest(t.expose().as_bytes()).into()) }
    }

    /// Whether anyone at all can log in (fail closed with 503 otherwise).
    pub fn any(&self, dir: &Directory) -> bool {
        self.legacy.is_some() || !dir.identities.is_empty()
    }

    /// The caller of `req`: its bearer token, or else its mTLS certificate identity.
    pub fn authenticate<B>(&self, dir: &Directory, req: &Request<B>) -> Result<Identity, Refusal> {
        if !self.any(dir) {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin_token_unset",
                "no admin token is configured and there are no [[admins]]; set the variable or file named in [admin] (or add [[admins]]) and restart",
            ));
        }
        let auth = req.headers().get(header::AUTHORIZATION);
        if let Some(v) = auth {
            let token = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .ok_or_else(|| {
                    Refusal::unauthorized(Failure::Malformed, "send the admin token as `Authorization: Bearer <token>`")
                })?;
            return self.authenticate_token(dir, token);
        }
        let cert = req.extensions().get::<crate::http::peer::Peer>().and_then(|p| p.tls_identity.as_deref());
        match cert {
            Some(c) => authenticate_cert(dir, c),
            None => Err(Refusal::unauthorized(
                Failure::NoCredential,
                "send an admin token as `Authorization: Bearer <token>` (or connect with a client certificate named in [[admins]] cert_identity)",
            )),
        }
    }

    /// The identity whose token is `token` (the console's login form uses this too).
    pub fn authenticate_token(&self, dir: &Directory, token: &str) -> Result<Identity, Refusal> {
        // Digests compared in constant time, against every entry (no early exit), so neither the
        // token's length nor which entry matched shows in the timing.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<Identity> = None;
        for a in &dir.identities {
            if let Some(d) = &a.sha256 {
                if bool::from(digest.ct_eq(d)) && found.is_none() {
                    found = Some(Identity { id: a.id.clone(), role: a.role });
                }
            }
        }
        if let Some(d) = &self.legacy {
            if bool::from(digest.ct_eq(d)) && found.is_none() {
                found = Some(Identity { id: LEGACY_ID.into(), role: Role::Admin });
            }
        }
        found.ok_or_else(|| Refusal::unauthorized(Failure::WrongToken, "the admin token is wrong"))
    }
}

/// The identity whose `cert_identity` is `cert` (a verified mTLS client identity).
pub fn authenticate_cert(dir: &Directory, cert: &str) -> Result<Identity, Refusal> {
    dir.identities
        .iter()
        .find(|a| a.cert_identity.as_deref() == Some(cert))
        .map(|a| Identity { id: a.id.clone(), role: a.role })
        .ok_or_else(|| {
            Refusal::unauthorized(
                Failure::UnknownCertificate,
                format!("the client certificate `{cert}` is not an admin: no [[admins]] entry has this cert_identity"),
            )
        })
}

/// The role a route needs; `None` for the open ones (`/healthz`, `/readyz`, `/console…`, which
/// has its own login). Routes not listed need `admin` (fail closed).
///
/// | role | routes |
/// |---|---|
/// | viewer | every `GET` below `/admin/v1/` and `/metrics` |
/// | responder | `POST /admin/v1/switches` (tool approvals in a batch need admin), `/playbooks/*`, `/rotate/prompt/*`, `/rotate/canary/*`, `/incidents/*/resolve`, `/incidents/*/checklist`, `/pending/*/approve`, `/pending/*/reject` |
/// | admin | `POST /admin/v1/policy/reload`, `/rotate/credentials`, `/rotate/credential/*`, anything else |
///
/// A pending action's approval also needs the role of the action itself ([`batch_role`]).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/healthz" || path == "/readyz" || path == "/console" || path.starts_with("/console/") {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        if path == "/metrics" || path.starts_with("/admin/v1/") {
            return Some(Role::Viewer);
        }
        return Some(Role::Admin);
    }
    if path == "/admin/v1/local/switches" || path.starts_with("/admin/v1/local/switches/") {
        // Break-glass on one replica (POST to set, DELETE to lift).
        return Some(Role::Responder);
    }
    if method != Method::POST {
        return Some(Role::Admin);
    }
    let p = path;
    let responder = p == "/admin/v1/switches"
        || p.starts_with("/admin/v1/playbooks/")
        || p.starts_with("/admin/v1/rotate/prompt/")
        || p.starts_with("/admin/v1/rotate/canary/")
        || (p.starts_with("/admin/v1/incidents/") && (p.ends_with("/resolve") || p.ends_with("/checklist")))
        || (p.starts_with("/admin/v1/pending/") && (p.ends_with("/approve") || p.ends_with("/reject")));
    Some(if responder { Role::Responder } else { Role::Admin })
}

/// The role an action needs: tool approvals and rejections (and the gateway's own actions) need
/// `admin`; every other switch needs `responder`.
pub fn action_role(a: &Action) -> Role {
    match a {
        Action::ApproveTool { .. }
        | Action::RejectTool { .. }
        | Action::ObserveTool { .. }
        | Action::IssueCanary { .. } => Role::Admin,
        _ => Role::Responder,
    }
}

/// The role a batch needs: the highest of its actions' (at least responder).
pub fn batch_role(actions: &[Action]) -> Role {
    actions.iter().map(action_role).max().unwrap_or(Role::Responder).max(Role::Responder)
}

/// An action's name (`set_level`, …: its `"action"` tag) and the value of its main argument, as
/// matched by `[admin.require_second]` names (`op` or `op:arg`): the level, `on`/`off` for
/// safe_mode, `server/tool` for tool approvals, otherwise the user, tenant, key id, session, tool,
/// endpoint, host, server or prompt it names.
pub fn action_arg(a: &Action) -> (String, Option<String>) {
    let op = serde_json::to_value(a)
        .ok()
        .and_then(|v| v.get("action").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let arg = match a {
        Action::SetLevel { level } => Some(level.clone()),
        Action::SafeMode { enabled } => Some(if *enabled { "on" } else { "off" }.to_owned()),
        Action::BlockUser { user, .. }
        | Action::UnblockUser { user }
        | Action::LimitUser { user, .. }
        | Action::UnlimitUser { user } => Some(user.clone()),
        Action::BlockTenant { tenant, .. } | Action::UnblockTenant { tenant } => Some(tenant.clone()),
        Action::RevokeKey { key_id } => Some(key_id.clone()),
        Action::TerminateSession { session, .. } => Some(session.clone()),
        Action::DisableTool { tool, .. } | Action::EnableTool { tool } => Some(tool.clone()),
        Action::DisableEndpoint { endpoint, .. } | Action::EnableEndpoint { endpoint } => Some(endpoint.clone()),
        Action::BlockEgress { host, .. } | Action::UnblockEgress { host } => Some(host.clone()),
        Action::IsolateServer { server, .. }
        | Action::RestoreServer { server }
        | Action::FreezeTools { server }
        | Action::UnfreezeTools { server } => Some(server.clone()),
        Action::ApproveTool { server, tool, .. }
        | Action::RejectTool { server, tool, .. }
        | Action::ObserveTool { server, tool, .. } => Some(format!("{server}/{tool}")),
        Action::RotatePrompt { prompt }
        | Action::RotateCanary { prompt }
        | Action::RestorePrompt { prompt }
        | Action::IssueCanary { prompt } => Some(prompt.clone()),
    };
    (op, arg)
}

/// The `[admin.require_second]` names that `actions` match (empty: no second approval needed).
pub fn needs_second(patterns: &[ActionPattern], actions: &[Action]) -> Vec<String> {
    let mut hit = Vec::new();
    for a in actions {
        let (op, arg) = action_arg(a);
        for p in patterns {
            let matches = p.op == op
                && match &p.arg {
                    None => true,
                    Some(want) => arg.as_deref().is_some_and(|got| got.eq_ignore_ascii_case(want)),
                };
            if matches && !hit.contains(&p.name()) {
                hit.push(p.name());
            }
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::admins::{AdminIdentity, Admins as Dir};
    use crate::http::peer::Peer;

    fn dir() -> Dir {
        let d = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        Dir {
            identities: vec![
                AdminIdentity {
                    id: "vera".into(),
                    role: Role::Viewer,
                    sha256: Some(d("v-token")),
                    cert_identity: None,
                },
                AdminIdentity {
                    id: "ada".into(),
                    role: Role::Admin,
                    sha256: None,
                    cert_identity: Some("ada.example".into()),
                },
            ],
            require_second: None,
            lockout: Default::default(),
        }
    }

    fn request(auth: Option<&str>, cert: Option<&str>) -> Request<()> {
        let mut r = Request::builder().uri("/admin/v1/state");
        if let Some(a) = auth {
            r = r.header(header::AUTHORIZATION, a);
        }
        let mut r = r.body(()).unwrap();
        r.extensions_mut().insert(Peer { addr: None, tls_identity: cert.map(std::sync::Arc::from) });
        r
    }

    #[test]
    fn a_verified_certificate_identity_authenticates_without_a_token() {
        let admins = Admins::new(None);
        let who = admins.authenticate(&dir(), &request(None, Some("ada.example"))).unwrap();
        assert_eq!(who, Identity { id: "ada".into(), role: Role::Admin });
        let r = admins.authenticate(&dir(), &request(None, Some("mallory"))).unwrap_err();
        assert_eq!((r.status, r.failure), (StatusCode::UNAUTHORIZED, Some(Failure::UnknownCertificate)));
        assert!(r.message.contains("mallory"), "{}", r.message);
        // A token that is sent must be right, even on a connection with a known certificate.
        let r = admins.authenticate(&dir(), &request(Some("Bearer wrong"), Some("ada.example"))).unwrap_err();
        assert_eq!((r.status, r.failure), (StatusCode::UNAUTHORIZED, Some(Failure::WrongToken)));
        let r = admins.authenticate(&dir(), &request(Some("Basic d3Jvbmc="), None)).unwrap_err();
        assert_eq!((r.status, r.failure), (StatusCode::UNAUTHORIZED, Some(Failure::Malformed)));
        // The token wins over the certificate when both are presented.
        let who = admins.authenticate(&dir(), &request(Some("Bearer v-token"), Some("ada.example"))).unwrap();
        assert_eq!(who.id, "vera");
        let r = admins.authenticate(&dir(), &request(None, None)).unwrap_err();
        assert_eq!((r.status, r.failure), (StatusCode::UNAUTHORIZED, Some(Failure::NoCredential)));
    }

    #[test]
    fn the_legacy_token_is_admin_and_nobody_configured_fails_closed() {
        let admins = Admins::new(Some(&Secret::new("legacy")));
        let who = admins.authenticate(&dir(), &request(Some("Bearer legacy"), None)).unwrap();
        assert_eq!(who, Identity { id: LEGACY_ID.into(), role: Role::Admin });
        let none = Admins::new(None).authenticate(&Dir::default(), &request(Some("Bearer legacy"), None));
        let none = none.unwrap_err();
        assert_eq!((none.status, none.failure), (StatusCode::SERVICE_UNAVAILABLE, None), "not counted as a failure");
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Responder && Role::Responder < Role::Admin);
        assert_eq!(Role::parse("responder"), Some(Role::Responder));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn routes_map_to_roles() {
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(required_role(&Method::GET, "/admin/v1/state"), Some(Role::Viewer));
        assert_eq!(required_role(&Method::POST, "/admin/v1/switches"), Some(Role::Responder));
        assert_eq!(required_role(&Method::POST, "/admin/v1/incidents/x/resolve"), Some(Role::Responder));
        assert_eq!(required_role(&Method::POST, "/admin/v1/policy/reload"), Some(Role::Admin));
        assert_eq!(required_role(&Method::POST, "/admin/v1/rotate/credential/openai"), Some(Role::Admin));
        assert_eq!(required_role(&Method::POST, "/admin/v1/something-new"), Some(Role::Admin));
        assert_eq!(required_role(&Method::DELETE, "/admin/v1/state"), Some(Role::Admin));
    }

    #[test]
    fn second_approval_names_match_op_and_arg() {
        let pats = vec![
            ActionPattern { op: "set_level".into(), arg: Some("normal".into()) },
            ActionPattern { op: "restore_server".into(), arg: None },
        ];
        let lift = [Action::SetLevel { level: "normal".into() }];
        assert_eq!(needs_second(&pats, &lift), vec!["set_level:normal".to_owned()]);
        assert!(needs_second(&pats, &[Action::SetLevel { level: "lockdown".into() }]).is_empty());
        assert_eq!(needs_second(&pats, &[Action::RestoreServer { server: "fs".into() }]), vec!["restore_server"]);
        assert_eq!(
            batch_role(&[Action::ApproveTool { server: "a".into(), tool: "b".into(), hash: "c".into() }]),
            Role::Admin
        );
        assert_eq!(batch_role(&lift), Role::Responder);
    }
}
