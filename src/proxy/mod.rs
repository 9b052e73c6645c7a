//! The data plane: listener, request pipeline, upstream client, streaming, errors.

pub mod admission;
pub mod body;
pub mod client;
pub mod conn;
pub mod decide;
pub mod error;
pub(crate) mod exchange;
mod health;
pub mod incidents;
pub mod listen_tls;
pub mod peer;
mod pipeline;
pub mod ratelimit;
pub mod script;
pub mod shards;
mod stream;
pub mod tls;
pub mod toolcalls;
pub mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::audit::{Audit, Record};
use crate::config::{self, Policy, PolicyError};
use crate::metrics::Metrics;
use crate::state::{ApplyError, StateStore};

pub use admission::Permit;
pub(crate) use health::{admit as circuit_admit, refused as circuit_refused};
pub(crate) use pipeline::{audit_gate, collect_limited};
pub use pipeline::{authenticate, handle};
pub use upstream::Clients;

/// The policy in force together with what was built from it.
#[derive(Debug)]
pub struct Active {
    /// The policy.
    pub policy: Arc<Policy>,
    /// Upstream clients built for it.
    pub clients: Arc<Clients>,
}

impl Active {
    /// Builds the runtime objects of a policy, its scanner knowing the canaries of `snap`.
    pub fn new(policy: Policy, snap: &crate::state::Snapshot) -> Result<Active, String> {
        let clients = Arc::new(Clients::build(&policy)?);
        let policy = if snap.canaries.is_empty() { policy } else { policy.with_canaries(&snap.canaries)? };
        Ok(Active { policy: Arc::new(policy), clients })
    }
}

/// Where the policy is reloaded from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// A file.
    File(PathBuf),
    /// The embedded demo policy.
    Demo,
}

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Policy and clients; swapped whole on reload.
    pub active: ArcSwap<Active>,
    /// The switches.
    pub state: StateStore,
    /// The audit trail.
    pub audit: Audit,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Incident triggers, incidents and automatic containment.
    pub incidents: crate::incident::Engine,
    /// Evidence capture around incidents (`[forensics]`; read at start, a reload does not change it).
    pub forensics: crate::forensics::Forensics,
    /// Alert sinks, the recent alerts and anomalies (running once `alerts::start` is called).
    pub alerts: crate::alerts::Alerts,
    /// Circuit breakers of the upstreams and MCP servers (kept across reloads).
    pub circuits: crate::circuit::Circuits,
    pub(crate) limiter: ratelimit::RateLimiter,
    /// Concurrency (global and per user) and the buffered request-body budget.
    pub(crate) admission: admission::Admission,
    /// MCP session id → the key id that opened it (a session is not shared across principals).
    pub(crate) mcp_sessions: moka::sync::Cache<String, Arc<str>>,
    /// MCP `server/tool` → (definition hash, readOnlyHint) as last listed, for level checks on calls.
    pub(crate) mcp_hints: moka::sync::Cache<String, (Arc<str>, bool)>,
    source: PolicySource,
    reload_lock: tokio::sync::Mutex<()>,
    /// Turns true when the shutdown drain time is up ([`Gateway::close_streams`]).
    closing: tokio::sync::watch::Sender<bool>,
    /// The TLS listeners, whose certificates reload with the policy (registered by `serve`).
    pub listener_tls: listen_tls::Listeners,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// State file.
    #[error(transparent)]
    State(#[from] crate::state::PersistError),
    /// Audit trail.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Clients (TLS).
    #[error("upstream TLS setup failed: {0}")]
    Tls(String),
    /// Incident file.
    #[error(transparent)]
    Incidents(#[from] crate::incident::IncidentError),
    /// A managed prompt could not get its first canary.
    #[error("cannot issue the first canary of a managed prompt: {0}")]
    Canaries(ApplyError),
    /// The evidence store (`[forensics] dir`) could not be opened.
    #[error("{0}")]
    Forensics(String),
}

/// Why a reload was refused (the old policy stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Invalid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// Could not build clients.
    #[error("upstream TLS setup failed: {0}")]
    Tls(String),
    /// A prompt new in the policy could not get its canary.
    #[error("cannot issue the first canary of a new managed prompt: {0}")]
    Canaries(ApplyError),
}

impl Gateway {
    /// Opens state and audit, and builds the runtime from `policy`.
    pub fn new(policy: Policy, source: PolicySource, metrics: Arc<Metrics>) -> Result<Arc<Gateway>, StartError> {
        let state = StateStore::open(&policy.storage.state_file)?;
        let audit = Audit::open(&policy.storage.audit_file, &policy.audit, metrics.clone())?;
        let incidents = crate::incident::Engine::open(&crate::incident::file_for(&policy.storage.state_file))?;
        let forensics = match &policy.forensics {
            Some(s) => crate::forensics::Forensics::open(s.clone()).map_err(StartError::Forensics)?,
            None => crate::forensics::Forensics::off(),
        };
        let alerts = crate::alerts::Alerts::new(metrics.clone(), &policy.storage.state_file);
        let admission =
            admission::Admission::new(policy.limits.max_concurrent_requests, policy.limits.max_buffered_request_bytes);
        let circuits = crate::circuit::Circuits::new(&policy);
        let active = Active::new(policy, &state.load()).map_err(StartError::Tls)?;
        metrics.set_switch_version(state.load().version);
        Ok(Arc::new(Gateway {
            active: ArcSwap::from_pointee(active),
            state,
            audit,
            metrics,
            incidents,
            forensics,
            alerts,
            circuits,
            limiter: ratelimit::RateLimiter::default(),
            admission,
            mcp_sessions: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(std::time::Duration::from_secs(24 * 3600))
                .build(),
            mcp_hints: moka::sync::Cache::new(100_000),
            source,
            reload_lock: tokio::sync::Mutex::new(()),
            closing: tokio::sync::watch::Sender::new(false),
            listener_tls: listen_tls::Listeners::default(),
        }))
    }

    /// Opens the gateway ([`Gateway::new`]) and issues a first canary to every managed prompt that
    /// has none yet (a persisted, audited switch batch by `firebreak`), so no request is ever sent
    /// with a prompt but without its canary.
    pub async fn start(
        policy: Policy,
        source: PolicySource,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Gateway>, StartError> {
        let gw = Gateway::new(policy, source, metrics)?;
        let _g = gw.reload_lock.lock().await;
        let active = gw.active.load_full();
        gw.issue_missing_canaries(&active).await.map_err(StartError::Canaries)?;
        drop(_g);
        Ok(gw)
    }

    /// Applies a switch batch. A batch that issues canaries first swaps in a scanner that detects
    /// them (before the snapshot that injects them becomes visible: requests load the snapshot
    /// first, then the policy), so a new canary is never sent upstream undetected.
    pub async fn apply(&self, batch: &crate::state::Batch) -> Result<crate::state::Applied, ApplyError> {
        if !batch.actions.iter().any(crate::state::Action::issues_canary) {
            let policy = self.policy();
            return self.state.apply(batch, &policy).await;
        }
        let _g = self.reload_lock.lock().await;
        let active = self.active.load_full();
        self.apply_with_scanner(batch, &active).await
    }

    /// The canary-issuing apply, with `reload_lock` held by the caller.
    async fn apply_with_scanner(
        &self,
        batch: &crate::state::Batch,
        active: &Arc<Active>,
    ) -> Result<crate::state::Applied, ApplyError> {
        let applied = self
            .state
            .apply_with(batch, &active.policy, |next| {
                let policy = active.policy.with_canaries(&next.canaries)?;
                self.active.store(Arc::new(Active { policy: Arc::new(policy), clients: active.clients.clone() }));
                Ok(())
            })
            .await?;
        self.metrics.set_switch_version(applied.after.version);
        Ok(applied)
    }

    /// Issues a first canary to every managed prompt of `active` without one (`reload_lock` held).
    /// True when it did, and so stored `active` (with a scanner knowing them) as the one in force.
    async fn issue_missing_canaries(&self, active: &Arc<Active>) -> Result<bool, ApplyError> {
        let snap = self.state.load();
        let prompts: Vec<String> =
            active.policy.managed_prompts.keys().filter(|id| snap.canaries.current(id).is_none()).cloned().collect();
        if prompts.is_empty() {
            return Ok(false);
        }
        let batch = crate::state::Batch {
            actions: prompts.iter().map(|id| crate::state::Action::IssueCanary { prompt: id.clone() }).collect(),
            reason: "first canary for a managed prompt".into(),
            actor: Some("firebreak".into()),
            expect_version: None,
        };
        let applied = self.apply_with_scanner(&batch, active).await?;
        self.audit
            .record(
                Record::new("rotation")
                    .with("event", "canary_issued")
                    .with("actor", "firebreak")
                    .with("prompts", prompts)
                    .with("before_version", applied.before)
                    .with("after_version", applied.after.version),
            )
            .await;
        Ok(true)
    }

    /// Forgets every rate-limit bucket. For offline replay, where each case must start from a full
    /// allowance; a serving gateway never calls it.
    pub fn reset_rate_limits(&self) {
        self.limiter.clear();
    }

    /// Ends every open stream (AI and MCP, now and later) with its terminal error event: the
    /// gateway is shutting down and the drain time is up.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Gateway::close_streams`] was called (at once if it already was). Stream pumps
    /// select on it.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            if rx.wait_for(|c| *c).await.is_err() {
                // The gateway is gone: so is every stream's reason to wait.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.active.load().policy.clone()
    }

    /// Re-reads the policy, validates it off the hot path, and swaps it in. On any error the old
    /// policy stays in force. Listener addresses, storage paths, the concurrency limit and the
    /// buffered-bytes budget need a restart to change. The TLS listeners' certificate files are
    /// re-read too, whatever became of the policy (a bad new certificate is refused on its own).
    pub async fn reload(&self, actor: &str) -> Result<Arc<Policy>, ReloadError> {
        let reloaded = self.reload_policy(actor).await;
        self.listener_tls.reload(&self.audit, actor).await;
        reloaded
    }

    async fn reload_policy(&self, actor: &str) -> Result<Arc<Policy>, ReloadError> {
        let _g = self.reload_lock.lock().await;
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || match source {
            PolicySource::File(p) => config::load(&p),
            PolicySource::Demo => config::load_str(config::DEMO_NAME, config::DEMO_POLICY, std::path::Path::new(".")),
        })
        .await
        .unwrap_or_else(|e| {
            Err(PolicyError(vec![config::Located {
                file: String::new(),
                line: 0,
                message: format!("reload task failed: {e}"),
                hint: None,
            }]))
        });
        let outcome = match loaded {
            Ok(mut policy) => {
                // Storage paths need a restart to change: the files in use stay (also when they came
                // from --state-file/--audit-file, which the reloaded file does not know).
                policy.storage = self.active.load().policy.storage.clone();
                Active::new(policy, &self.state.load()).map_err(ReloadError::Tls)
            }
            Err(e) => Err(ReloadError::Invalid(e)),
        };
        match outcome {
            Ok(active) => {
                // Breakers first: a target new in this policy has one before a request can reach it.
                self.circuits.rebuild(&active.policy);
                let active = Arc::new(active);
                // A prompt new in this policy gets its canary in the same swap: the batch stores the
                // policy (with a scanner knowing the canary) before the snapshot injecting it.
                let old = self.active.load_full();
                match self.issue_missing_canaries(&active).await {
                    Ok(true) => {} // stored with the scanner that knows the new canaries
                    Ok(false) => self.active.store(active),
                    Err(e) => {
                        self.active.store(old);
                        self.metrics.policy_reload("rejected");
                        tracing::warn!(actor, error = %e, "policy reload rejected: a new prompt could not get its canary");
                        return Err(ReloadError::Canaries(e));
                    }
                }
                let policy = self.active.load().policy.clone();
                self.metrics.policy_reload("ok");
                self.audit.record(Record::new("policy").with("event", "reloaded").with("actor", actor)).await;
                tracing::info!(actor, "policy reloaded");
                Ok(policy)
            }
            Err(e) => {
                self.metrics.policy_reload("rejected");
                self.audit
                    .record(
                        Record::new("policy")
                            .with("event", "reload_rejected")
                            .with("actor", actor)
                            .with("reason", e.to_string()),
                    )
                    .await;
                tracing::warn!(actor, error = %e, "policy reload rejected; the old policy stays in force");
                Err(e)
            }
        }
    }
}

/// Serves accepted connections on the current runtime, and drains them on shutdown. HTTP/1.1 and
/// HTTP/2 (prior knowledge or negotiated) are both served.
pub(crate) struct Connections {
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    limits: conn::ConnLimits,
    /// TLS: the handshake runs in each connection's task, before HTTP.
    tls: Option<Arc<listen_tls::ServerTls>>,
}

impl Connections {
    pub(crate) fn new(limits: conn::ConnLimits) -> Connections {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        // Pings find dead peers under open streams; the idle timeout (in `conn::Watched`) closes
        // live connections that have nothing in flight.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.h2_keep_alive_interval)
            .keep_alive_timeout(limits.h2_keep_alive_timeout)
            .max_concurrent_streams(limits.h2_max_concurrent_streams);
        Connections {
            builder: Arc::new(builder),
            graceful: hyper_util::server::graceful::GracefulShutdown::new(),
            limits,
            tls: None,
        }
    }

    /// Serves TLS (when `tls` is set) instead of plain HTTP.
    pub(crate) fn with_tls(mut self, tls: Option<Arc<listen_tls::ServerTls>>) -> Connections {
        self.tls = tls;
        self
    }

    /// Spawns the task serving `stream` on the current runtime; `on_close` runs when it ends.
    pub(crate) fn serve<F, Fut>(
        &self,
        stream: tokio::net::TcpStream,
        handler: &F,
        on_close: impl FnOnce() + Send + 'static,
    ) where
        F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = http::Response<body::Body>> + Send + 'static,
    {
        let _ = stream.set_nodelay(true);
        let addr = stream.peer_addr().ok();
        let (stream, activity) = conn::Watched::new(stream, self.limits);
        let h = handler.clone();
        let Some(tls) = &self.tls else {
            let peer = peer::Peer::tcp(addr);
            let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                let h = h.clone();
                let in_flight = activity.request();
                async move { Ok::<_, std::convert::Infallible>(h(req).await.map(|b| conn::Counted::new(b, in_flight))) }
            });
            let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let conn = self.graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                on_close();
            });
            return;
        };
        // TLS: the handshake runs here, in the connection's task, bounded by the first-byte timeout;
        // the acceptor never waits for it. The watcher is taken now so a shutdown during the
        // handshake still waits for (and then closes) this connection.
        let (tls, builder, watcher) = (tls.clone(), self.builder.clone(), self.graceful.watcher());
        let timeout = self.limits.first_byte_timeout;
        tokio::spawn(async move {
            match tls.accept(stream, timeout).await {
                Ok((stream, tls_identity)) => {
                    if tls_identity.is_some() {
                        tracing::debug!(listener = tls.listener(), peer = ?addr, identity = ?tls_identity, "TLS client certificate verified");
                    }
                    let peer = peer::Peer { addr, tls_identity };
                    let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        let h = h.clone();
                        let in_flight = activity.request();
                        async move {
                            Ok::<_, std::convert::Infallible>(h(req).await.map(|b| conn::Counted::new(b, in_flight)))
                        }
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                Err(e) if tls.listener() == "admin" => {
                    tracing::info!(listener = "admin", peer = ?addr, error = %e, "TLS connection refused")
                }
                Err(e) => {
                    tracing::debug!(listener = tls.listener(), peer = ?addr, error = %e, "TLS connection refused")
                }
            }
            on_close();
        });
    }

    /// Asks every open connection to finish its requests and close; waits at most `grace`.
    pub(crate) async fn drain(self, grace: std::time::Duration) {
        if tokio::time::timeout(grace, self.graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after the grace period; closing them");
        }
    }
}

/// Resolves once `stop` turns true, or once its sender is gone (shutdown either way).
pub async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts connections on `listener` and serves them on the current runtime until `shutdown`
/// resolves, then drains open connections (bounded by `grace`). At most `max_connections` are
/// open at once (the admin listener's own cap: the proxy's load never reaches it). The admin API
/// and the replay upstream use this; the proxy listener spreads its connections over [`shards`].
pub async fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    limits: impl Into<conn::ConnLimits>,
    shutdown: impl Future<Output = ()>,
    grace: std::time::Duration,
) where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<body::Body>> + Send + 'static,
{
    let cap = conn::ConnLimit::new(config::Limits::default().admin_max_connections, "local");
    serve_capped(listener, handler, limits.into(), cap, None, shutdown, grace).await;
}

/// [`serve`] with an explicit connection cap, and TLS when `tls` is set.
pub async fn serve_capped<F, Fut>(
    listener: TcpListener,
    handler: F,
    limits: conn::ConnLimits,
    cap: Arc<conn::ConnLimit>,
    tls: Option<Arc<listen_tls::ServerTls>>,
    shutdown: impl Future<Output = ()>,
    grace: std::time::Duration,
) where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<body::Body>> + Send + 'static,
{
    let conns = Connections::new(limits).with_tls(tls);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            () = cap.room() => {
                let accepted = tokio::select! {
                    _ = &mut shutdown => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, _peer)) => {
                        let c = cap.clone();
                        conns.serve(stream, &handler, move || c.closed());
                    }
                    Err(e) => {
                        cap.closed();
                        shards::accept_failed(&e).await;
                    }
                }
            }
        }
    }
    conns.drain(grace).await;
}

/// The AI-traffic handler for [`serve`].
pub fn handler(
    gw: Arc<Gateway>,
) -> impl Fn(
    http::Request<hyper::body::Incoming>,
) -> std::pin::Pin<Box<dyn Future<Output = http::Response<body::Body>> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |req| {
        let gw = gw.clone();
        Box::pin(async move {
            // A request whose body is left unread (refused before reading it, 413, 408) leaves the
            // connection unusable: hyper closes it. Say so, so the client does not send its next
            // request on it. (HTTP/2 resets just the stream.)
            if req.version() >= http::Version::HTTP_2 || http_body::Body::is_end_stream(req.body()) {
                return pipeline::handle(gw, req.map(body::ReadToEnd::done)).await;
            }
            let (req, read) = body::ReadToEnd::watch(req);
            let mut resp = pipeline::handle(gw, req).await;
            if !read.load(std::sync::atomic::Ordering::Relaxed) {
                resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            resp
        })
    }
}
