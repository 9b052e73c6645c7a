//! The web console at `/console` on the admin listener: server-rendered pages (maud) and one small
//! script and stylesheet embedded in the binary, for the people who flip the switches.
//!
//! Login takes an admin token (a form POST) or the admin listener's mTLS identity and opens a
//! server-side session ([`session`]): a random 256-bit id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` on a TLS listener) with an expiry. The script calls the admin API itself with
//! that cookie; every state-changing call must carry the session's CSRF token in `X-CSRF-Token`
//! (compared in constant time). Every console response carries a strict Content-Security-Policy
//! (`default-src 'self'`, no inline script or style), `X-Frame-Options: DENY` and
//! `Referrer-Policy: no-referrer`. The admin token never reaches a page or a URL.
//!
//! Maud rather than askama: templates are Rust expressions checked at compile time, every
//! interpolation is HTML-escaped unless marked otherwise, and it adds two small crates to the build
//! (its proc macro reuses the `syn` already compiled for serde).

pub(crate) mod audit;
mod pages;
pub(crate) use pages::verify_json;
pub(crate) mod session;
pub(crate) mod who;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::{error, json_response, Admin};
use crate::http::body::{full, Body, ChannelBody};
use session::{Sessions, COOKIE};
use who::Identity;

/// Largest login form.
const MAX_FORM: usize = 8 << 10;
/// The header the script echoes the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How often an idle decision stream sends a keep-alive comment.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const JS: &str = include_str!("assets/console.js");
const CSS: &str = include_str!("assets/console.css");

/// The console's state in the admin API.
#[derive(Debug, Default)]
pub struct Console {
    pub(crate) sessions: Sessions,
}

/// What a request to the admin API says about a console session.
pub(crate) enum ApiAuth {
    /// No console cookie: the bearer token decides.
    NotConsole,
    /// A live session, CSRF checked for a state-changing call.
    Session(Identity),
    /// Refused: expired session, CSRF failure.
    Refused(Response<Body>),
}

/// The value of the console cookie, if the request has one.
pub(crate) fn cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|all| {
        all.split(';').find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')).map(str::to_owned))
    })
}

/// Decodes `application/x-www-form-urlencoded` text (and query strings): `+` is a space, `%XX` a byte.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|c| char::from(*c).to_digit(16)),
                b.get(i + 2).and_then(|c| char::from(*c).to_digit(16)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `(key, value)` pairs of a form or query string, decoded.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// Adds the console's security headers.
fn harden(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, markup: maud::Markup) -> Response<Body> {
    let mut r = Response::new(full(markup.into_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn asset(body: &'static str, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

impl Admin {
    /// Whether the admin listener speaks TLS (the session cookie is then `Secure`).
    fn console_tls(&self, req: &Request<Incoming>) -> bool {
        self.gw.policy().listen.admin_tls.is_some()
            || req.extensions().get::<crate::http::peer::Peer>().is_some_and(|p| p.tls_identity.is_some())
    }

    /// The identity an admin token stands for (`[[admins]]` or the legacy `[admin]` token).
    fn token_identity(&self, token: &str) -> Option<Identity> {
        self.admins.authenticate_token(&self.gw.policy().admins, token.trim()).ok()
    }

    /// The identity of a verified client certificate (an `[[admins]]` entry's `cert_identity`).
    fn certificate_identity(&self, name: &str) -> Option<Identity> {
        super::identity::authenticate_cert(&self.gw.policy().admins, name).ok()
    }

    /// The console session behind an admin API request, checked (see [`ApiAuth`]).
    pub(crate) fn console_auth(&self, req: &Request<Incoming>) -> ApiAuth {
        if req.headers().contains_key(header::AUTHORIZATION) {
            return ApiAuth::NotConsole;
        }
        let Some(sid) = cookie(req) else { return ApiAuth::NotConsole };
        let Some(s) = self.console.sessions.get(&sid) else {
            return ApiAuth::Refused(error(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the console session has expired or ended; log in again at /console/login",
            ));
        };
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            let presented = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !s.csrf_ok(presented) {
                return ApiAuth::Refused(error(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "this call changes state and must carry the console's CSRF token in X-CSRF-Token; reload the page",
                ));
            }
        }
        // The route's role is checked (and a refusal audited) by the admin API, as for a token.
        ApiAuth::Session(s.identity)
    }

    /// Everything under `/console`.
    pub(crate) async fn console(&self, req: Request<Incoming>) -> Response<Body> {
        harden(self.console_route(req).await)
    }

    async fn console_route(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/console/assets/console.js") => return asset(JS, "text/javascript; charset=utf-8"),
            (&Method::GET, "/console/assets/console.css") => return asset(CSS, "text/css; charset=utf-8"),
            (&Method::GET, "/console/login") => {
                if cookie(&req).and_then(|c| self.console.sessions.get(&c)).is_some() {
                    return redirect("/console/now");
                }
                return html(StatusCode::OK, pages::login(self.login_cert(&req).as_deref(), None));
            }
            (&Method::POST, "/console/login") => return self.login(req).await,
            _ => {}
        }
        let sid = cookie(&req);
        let Some(s) = sid.as_deref().and_then(|c| self.console.sessions.get(c)) else {
            return if method == Method::GET {
                redirect("/console/login")
            } else {
                html(StatusCode::UNAUTHORIZED, pages::login(None, Some("Your session has ended; log in again.")))
            };
        };
        if method == Method::POST && path == "/console/logout" {
            let tls = self.console_tls(&req);
            let body = match read_form(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let token = form_pairs(&body).into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v);
            if !s.csrf_ok(token.as_deref()) {
                return error(StatusCode::FORBIDDEN, "csrf_failed", "logout must carry the console's CSRF token");
            }
            if let Some(c) = &sid {
                self.console.sessions.remove(c);
            }
            let mut r = redirect("/console/login");
            r.headers_mut().insert(header::SET_COOKIE, expired_cookie(tls));
            return r;
        }
        if method != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "console pages are read with GET; changes go through the admin API",
            );
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        match path.as_str() {
            "/console" | "/console/" => redirect("/console/now"),
            "/console/now" => html(StatusCode::OK, pages::now(self, &s).await),
            "/console/act" => html(StatusCode::OK, pages::act(self, &s)),
            "/console/incidents" => html(StatusCode::OK, pages::incidents(self, &s).await),
            p if p.starts_with("/console/incidents/") => {
                let id = p.trim_start_matches("/console/incidents/");
                match pages::incident(self, &s, id).await {
                    Some(m) => html(StatusCode::OK, m),
                    None => html(StatusCode::NOT_FOUND, pages::not_found(&s, &format!("No incident {id}."))),
                }
            }
            "/console/tools" => html(StatusCode::OK, pages::tools(self, &s)),
            "/console/audit" => match audit::AuditQuery::parse(&query) {
                Ok(q) => html(StatusCode::OK, pages::audit(self, &s, &q).await),
                Err(m) => html(StatusCode::BAD_REQUEST, pages::not_found(&s, &m)),
            },
            "/console/api/rates" => self.rates(),
            _ => html(StatusCode::NOT_FOUND, pages::not_found(&s, &format!("No console page {path}."))),
        }
    }

    /// The verified client certificate's name on this connection, if any.
    fn login_cert(&self, req: &Request<Incoming>) -> Option<String> {
        req.extensions().get::<crate::http::peer::Peer>().and_then(|p| p.tls_identity.as_deref().map(str::to_owned))
    }

    async fn login(&self, req: Request<Incoming>) -> Response<Body> {
        // No session exists yet, so no synchronizer token: a login form posted from another site is
        // refused by the browser's Fetch Metadata, or else by its Origin (`null` is what a page with
        // `Referrer-Policy: no-referrer` sends for its own form, so it cannot be told apart).
        let h = req.headers();
        let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null");
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let foreign_origin = origin.is_some_and(|o| o.split_once("://").map(|(_, h)| h) != Some(host));
        if matches!(site, Some("cross-site" | "same-site")) || foreign_origin {
            return error(StatusCode::FORBIDDEN, "cross_origin", "a login from another site is refused");
        }
        let tls = self.console_tls(&req);
        let cert = self.login_cert(&req);
        let source = super::lockout::Source::of(req.extensions().get::<crate::http::peer::Peer>());
        let body = match read_form(req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let pairs = form_pairs(&body);
        let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (identity, method) = if field("method") == Some("certificate") {
            match cert.as_deref().and_then(|c| self.certificate_identity(c)) {
                Some(i) => (i, "certificate"),
                None => {
                    let why = match cert {
                        Some(_) => super::lockout::Failure::UnknownCertificate,
                        None => super::lockout::Failure::NoCredential,
                    };
                    self.auth_failed(source, why, "POST /console/login");
                    return html(
                        StatusCode::UNAUTHORIZED,
                        pages::login(cert.as_deref(), Some("Your client certificate is not an admin identity.")),
                    );
                }
            }
        } else {
            if !self.admins.any(&self.gw.policy().admins) {
                return html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::login(cert.as_deref(), Some("No admin token is configured on this gateway.")),
                );
            }
            if let Some(left) = self.locked_out(source) {
                let mut r = html(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::login(
                        cert.as_deref(),
                        Some(&format!(
                            "Too many failed logins from your address: try again in {} seconds.",
                            left.as_secs().max(1)
                        )),
                    ),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(left.as_secs().max(1)));
                return r;
            }
            match field("token").filter(|t| !t.trim().is_empty()).and_then(|t| self.token_identity(t)) {
                Some(i) => (i, "token"),
                None => {
                    let why = match field("token").filter(|t| !t.trim().is_empty()) {
                        Some(_) => super::lockout::Failure::WrongToken,
                        None => super::lockout::Failure::NoCredential,
                    };
                    self.auth_failed(source, why, "POST /console/login");
                    return html(
                        StatusCode::UNAUTHORIZED,
                        pages::login(cert.as_deref(), Some("That token is not valid.")),
                    );
                }
            }
        };
        tracing::info!(identity = %identity.id, role = identity.role.as_str(), method, "console login");
        let sid = self.console.sessions.create(identity, method);
        let mut r = redirect("/console/now");
        let secure = if tls { "; Secure" } else { "" };
        let c =
            format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", session::TTL.as_secs());
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    /// Totals from the metrics, for the live rates on the Now page (the script takes differences).
    fn rates(&self) -> Response<Body> {
        let requests: u64 = self.gw.metrics.request_counts().iter().map(|(_, n)| n).sum();
        let mut by_action = serde_json::Map::new();
        for ((_, action), n) in self.gw.metrics.decision_counts() {
            let e = by_action.entry(action.to_owned()).or_insert(json!(0u64));
            *e = json!(e.as_u64().unwrap_or(0) + n);
        }
        json_response(
            StatusCode::OK,
            &json!({"requests": requests, "decisions": by_action, "version": self.gw.state.load().version}),
        )
    }

    /// `GET /admin/v1/decisions/stream`: the audit records written from now on, one SSE event each
    /// (see [`crate::audit::Audit::subscribe`]). Lossy for a slow reader, which gets an
    /// `event: lagged` with the count it missed; the request path never waits for it.
    pub(crate) fn decision_stream(&self) -> Response<Body> {
        let mut rx = self.gw.audit.subscribe();
        let (tx, body) = ChannelBody::new(16);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            if tx.send(Bytes::from_static(b": firebreak decisions\n\n")).await.is_err() {
                return;
            }
            loop {
                let chunk = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                    Ok(Ok(rec)) => Bytes::from(format!("data: {rec}\n\n")),
                    Ok(Err(RecvError::Lagged(n))) => {
                        Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"))
                    }
                    Ok(Err(RecvError::Closed)) => return,
                    Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut r = Response::new(body.boxed());
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

fn expired_cookie(secure: bool) -> HeaderValue {
    let s = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{s}"))
        .unwrap_or(HeaderValue::from_static("firebreak_console=; Path=/; Max-Age=0"))
}

async fn read_form(req: Request<Incoming>) -> Result<String, Response<Body>> {
    match Limited::new(req.into_body(), MAX_FORM).collect().await {
        Ok(c) => Ok(String::from_utf8_lossy(&c.to_bytes()).into_owned()),
        Err(_) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "console forms are limited to 8 KiB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(form_decode("a+b%20c%3A"), "a b c:");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
        assert_eq!(
            form_pairs("token=x%2By&method="),
            vec![("token".into(), "x+y".into()), ("method".into(), "".into())]
        );
    }
}
