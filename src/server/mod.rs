//! The listeners, above both surfaces: accepting and serving connections (HTTP/1.1 and HTTP/2,
//! plain or TLS), the shards, connection limits, and the routing of each request to the AI surface
//! ([`crate::proxy`]) or to MCP ([`crate::mcp`]).

pub mod conn;
pub mod shards;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config;
use crate::gateway::Gateway;
use crate::http::body::{self, BoxError};
use crate::http::{listen_tls, peer};

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

/// Routing, above both surfaces: `/mcp/<server>` goes to MCP, everything else to the AI pipeline.
/// Generic over the body so in-process callers (offline replay) can hand in a whole buffer
/// instead of a socket's `Incoming`.
pub async fn route<B>(gw: Arc<Gateway>, req: http::Request<B>) -> http::Response<body::Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if req.uri().path().starts_with("/mcp/") {
        return crate::mcp::handle(gw, req, crate::http::new_request_id()).await;
    }
    crate::proxy::handle(gw, req).await
}

/// The proxy listener's handler for [`serve`]: [`route`], with `connection: close` after a request
/// whose body was left unread.
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
                return route(gw, req.map(body::ReadToEnd::done)).await;
            }
            let (req, read) = body::ReadToEnd::watch(req);
            let mut resp = route(gw, req).await;
            if !read.load(std::sync::atomic::Ordering::Relaxed) {
                resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            resp
        })
    }
}
