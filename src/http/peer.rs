//! Who is on the other end of a connection.
//!
//! Set once per connection by the listener (`server::Connections::serve`) and attached to every
//! request on it as a request extension, so any phase (audit metadata, admin identity) can read it
//! with `req.extensions().get::<Peer>()` without the connection layer knowing who asks.

use std::net::SocketAddr;
use std::sync::Arc;

/// The connection's peer: the direct TCP address and, on a TLS listener that asked for a client
/// certificate, the identity taken from the verified certificate.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The address of the direct TCP peer (a load balancer's, behind one).
    pub addr: Option<SocketAddr>,
    /// The verified client certificate's identity (SAN or CN, as configured), when there is one.
    pub tls_identity: Option<Arc<str>>,
}

impl Peer {
    /// A plain-TCP peer.
    pub fn tcp(addr: Option<SocketAddr>) -> Peer {
        Peer { addr, tls_identity: None }
    }
}
