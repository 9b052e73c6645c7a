//! HTTP plumbing shared by both surfaces (AI in `proxy`, MCP in `mcp`) and the admin API: bodies
//! and the one request-body reader, errors → responses, admission (concurrency and the buffered-bytes
//! budget), the identity phase, the client's facts, the outbound clients (upstreams, MCP servers,
//! alert sinks) and their TLS, the listeners' TLS, and the scripted upstream. It knows nothing of the
//! gateway's runtime (`gateway`) nor of the listeners (`server`).

pub mod admission;
mod auth;
pub mod body;
pub mod client;
pub mod error;
pub mod listen_tls;
pub mod outbound;
pub mod peer;
pub mod script;
pub mod shard;
pub mod tls;

use http::HeaderValue;

pub use auth::authenticate;

/// A new request id (`req_` + 24 hex digits), sent upstream and back to the client as `x-request-id`.
pub(crate) fn new_request_id() -> HeaderValue {
    let n: u128 = rand::random();
    let s = format!("req_{:024x}", n >> 32);
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("req_unknown"))
}
