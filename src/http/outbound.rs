//! The gateway's outbound HTTP: the pooled hyper client (rustls), the per-policy client sets (one per
//! shard), the response headers passed back, and the class of a transport failure. The AI surface
//! (`proxy::upstream`), MCP (`mcp::upstream`) and the alert sinks all use it.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{Limits, Policy, UpstreamKind};

/// The pooled HTTP(S) client.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Clients for a policy's upstreams (one per distinct extra CA), one set per shard so that a
/// pooled upstream connection is used by the thread that drives it ([`super::shard`]).
#[derive(Debug, Default)]
pub struct Clients {
    shards: Vec<ClientSet>,
}

#[derive(Debug, Default)]
struct ClientSet {
    by_upstream: HashMap<String, HttpClient>,
    by_mcp_server: HashMap<String, HttpClient>,
}

impl Clients {
    /// Builds the clients a policy needs, for every shard.
    pub fn build(policy: &Policy) -> Result<Clients, String> {
        let shards = (0..super::shard::count()).map(|_| ClientSet::build(policy)).collect::<Result<_, _>>()?;
        Ok(Clients { shards })
    }

    /// The set of the calling thread's shard.
    fn here(&self) -> Option<&ClientSet> {
        self.shards.get(super::shard::current()).or(self.shards.first())
    }

    /// The client for an upstream.
    pub(crate) fn upstream(&self, name: &str) -> Option<&HttpClient> {
        self.here()?.by_upstream.get(name)
    }

    /// The client for an MCP server.
    pub fn mcp(&self, server: &str) -> Option<&HttpClient> {
        self.here()?.by_mcp_server.get(server)
    }
}

impl ClientSet {
    fn build(policy: &Policy) -> Result<ClientSet, String> {
        // One pooled client per distinct extra CA, shared by the upstreams and MCP servers using it.
        let mut by_ca: HashMap<Option<std::path::PathBuf>, HttpClient> = HashMap::new();
        let mut client_for = |ca: &Option<std::path::PathBuf>| -> Result<HttpClient, String> {
            if let Some(c) = by_ca.get(ca) {
                return Ok(c.clone());
            }
            let c = new_client(ca.as_deref(), &policy.limits)?;
            by_ca.insert(ca.clone(), c.clone());
            Ok(c)
        };
        let mut by_upstream = HashMap::new();
        for u in policy.upstreams.values().filter(|u| u.kind != UpstreamKind::Scripted) {
            by_upstream.insert(u.name.clone(), client_for(&u.extra_ca)?);
        }
        let mut by_mcp_server = HashMap::new();
        for s in policy.mcp.servers.values() {
            by_mcp_server.insert(s.name.clone(), client_for(&s.extra_ca)?);
        }
        Ok(ClientSet { by_upstream, by_mcp_server })
    }
}

pub(crate) fn new_client(extra_ca: Option<&std::path::Path>, limits: &Limits) -> Result<HttpClient, String> {
    https_client(extra_ca, limits.upstream_connect_timeout, Duration::from_secs(90), 256)
}

/// The gateway's outbound HTTP client: hyper with rustls (platform roots plus `extra_ca`),
/// HTTP/1.1 and HTTP/2, plain HTTP allowed, no Nagle. Upstreams and alert sinks both use it.
pub(crate) fn https_client(
    extra_ca: Option<&std::path::Path>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
) -> Result<HttpClient, String> {
    let tls = super::tls::client_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool_idle_timeout)
        .pool_max_idle_per_host(pool_max_idle_per_host)
        .build(https))
}

/// Response headers never passed back.
fn drop_response_header(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "trailer"
            | "te"
            | "content-length"
            | "content-encoding"
            | "set-cookie"
            | "alt-svc"
    )
}

/// Copies the provider's response headers that are safe to pass back.
pub fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !drop_response_header(k) {
            to.append(k.clone(), v.clone());
        }
    }
}

/// The class of a transport error, for the circuit breaker: the connection could not be made, or it
/// broke before the answer.
pub(crate) fn transport_failure(e: &hyper_util::client::legacy::Error) -> crate::circuit::Failure {
    if e.is_connect() {
        crate::circuit::Failure::Connect
    } else {
        crate::circuit::Failure::Reset
    }
}
