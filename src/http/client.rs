//! Who sent a request, for its audit record: the direct peer's address, the client address a
//! trusted proxy forwarded (`Forwarded`, else `X-Forwarded-For`), the user agent and the TLS client
//! identity.
//!
//! Taken from the request when it arrives (cheap: the peer is copied, the header values are
//! reference-counted clones, nothing is parsed or allocated when a header is absent) and resolved
//! into record fields in the log phase, with the policy in hand.
//!
//! A forwarded address is believed only when the direct peer is one of `[listen] trusted_proxies`.
//! The header is then read from the right (the hop nearest to us) and the first address that is not
//! itself a trusted proxy is the client: entries to its left were written by whoever sent the
//! request to that hop and prove nothing. A malformed entry met on the way (not an address,
//! `unknown`, an obfuscated `_id`) ends the walk with no forwarded address: a header that cannot be
//! read is never half-trusted.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};

use super::peer::Peer;
use crate::audit::Exchange;
use crate::inspect::egress::Cidr;

/// Longest user agent kept in a record, in characters.
pub const MAX_USER_AGENT: usize = 256;

/// The request's client facts, as received.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    peer: Option<Peer>,
    user_agent: Option<HeaderValue>,
    /// Every `Forwarded` value, in order (almost always one; several only when sent so).
    forwarded: Option<Vec<HeaderValue>>,
    /// Every `X-Forwarded-For` value, in order.
    xff: Option<Vec<HeaderValue>>,
}

impl ClientMeta {
    /// Reads the peer (set by the listener) and the headers of a request.
    pub fn of(extensions: &http::Extensions, headers: &HeaderMap) -> ClientMeta {
        // Nothing is allocated for a header that is absent (the common case).
        let all = |name: http::header::HeaderName| -> Option<Vec<HeaderValue>> {
            headers.contains_key(&name).then(|| headers.get_all(name).iter().cloned().collect())
        };
        ClientMeta {
            peer: extensions.get::<Peer>().cloned(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            forwarded: all(http::header::FORWARDED),
            xff: all(http::header::HeaderName::from_static("x-forwarded-for")),
        }
    }

    /// The direct peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().and_then(|p| p.addr)
    }

    /// The client address forwarded by a trusted proxy, when the direct peer is one.
    pub fn forwarded_for(&self, trusted: &[Cidr]) -> Option<IpAddr> {
        if trusted.is_empty() {
            return None;
        }
        let peer = self.peer_addr()?.ip();
        if !is_trusted(trusted, peer) {
            return None;
        }
        if let Some(f) = &self.forwarded {
            return walk(list(f)?.into_iter().rev().map(forwarded_for_entry), trusted);
        }
        walk(list(self.xff.as_deref()?)?.into_iter().rev().map(|e| parse_addr(e.trim())), trusted)
    }

    /// Adds `client_addr`, `forwarded_for`, `user_agent` and `tls_identity` to `r` (those known).
    /// The user agent and identity are client text: secrets redacted, control characters escaped,
    /// capped (`audit::client_text_capped`).
    pub fn fill(&self, r: &mut Exchange, scanner: &crate::inspect::Scanner, trusted: &[Cidr]) {
        let ua = self.user_agent.as_ref().map(|v| match v.to_str() {
            Ok(s) => crate::audit::client_text_capped(scanner, s, MAX_USER_AGENT),
            Err(_) => crate::audit::client_text_capped(scanner, &String::from_utf8_lossy(v.as_bytes()), MAX_USER_AGENT),
        });
        let identity = self.peer.as_ref().and_then(|p| p.tls_identity.as_deref());
        r.client_addr = self.peer_addr().map(|a| a.to_string());
        r.forwarded_for = self.forwarded_for(trusted).map(|a| a.to_string());
        r.user_agent = ua;
        r.tls_identity = identity.map(|i| crate::audit::client_text_capped(scanner, i, MAX_USER_AGENT));
    }
}

/// Several header lines are one list, in order; a line that is not text spoils the header.
fn list(values: &[HeaderValue]) -> Option<Vec<&str>> {
    let mut entries = Vec::new();
    for v in values {
        entries.extend(v.to_str().ok()?.split(','));
    }
    Some(entries)
}

fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// From the nearest hop outwards: the first address that is not a trusted proxy. A malformed
/// entry stops the walk (nothing is believed); a chain of trusted proxies only yields its
/// left-most address.
fn walk(entries: impl Iterator<Item = Option<IpAddr>>, trusted: &[Cidr]) -> Option<IpAddr> {
    let mut last = None;
    for e in entries {
        let ip = e?;
        if !is_trusted(trusted, ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// The `for=` of one `Forwarded` element (RFC 7239): `for=192.0.2.60`, `for="[2001:db8::1]:4711"`.
fn forwarded_for_entry(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (k, v) = pair.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            found = Some(parse_addr(v)?);
        }
    }
    found
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(peer: &str, headers: &[(&str, &str)]) -> ClientMeta {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
        }
        let mut ext = http::Extensions::new();
        ext.insert(Peer::tcp(Some(peer.parse().expect("addr"))));
        ClientMeta::of(&ext, &h)
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().expect("cidr")).collect()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let lb = cidrs(&["10.0.0.0/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        // From an untrusted peer, a forged header is ignored.
        assert_eq!(meta("203.0.113.9:5000", &[("x-forwarded-for", "1.2.3.4")]).forwarded_for(&lb), None);
        // No trusted proxies configured: never.
        assert_eq!(meta("10.0.0.1:5000", &[("x-forwarded-for", "1.2.3.4")]).forwarded_for(&[]), None);
        // The right-most untrusted address: what the client itself put first is not believed.
        let m = meta("10.0.0.1:5000", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(m.forwarded_for(&lb), ip("198.51.100.7"));
        // Several headers are one list, in order.
        let m = meta("10.0.0.1:5000", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8")]);
        assert_eq!(m.forwarded_for(&lb), ip("198.51.100.8"));
        // Only trusted hops: the left-most.
        assert_eq!(meta("10.0.0.1:1", &[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]).forwarded_for(&lb), ip("10.9.9.9"));
        // Ports and brackets as proxies write them.
        assert_eq!(
            meta("10.0.0.1:1", &[("x-forwarded-for", "[2001:db8::1]:443")]).forwarded_for(&lb),
            ip("2001:db8::1")
        );
        assert_eq!(meta("10.0.0.1:1", &[("x-forwarded-for", "192.0.2.1:8080")]).forwarded_for(&lb), ip("192.0.2.1"));
        let m = meta("10.0.0.1:1", &[("forwarded", "for=6.6.6.6"), ("forwarded", "for=198.51.100.9")]);
        assert_eq!(m.forwarded_for(&lb), ip("198.51.100.9"), "several Forwarded lines are one list");
        // Forwarded (RFC 7239) wins over X-Forwarded-For.
        let m = meta(
            "10.0.0.1:1",
            &[
                ("forwarded", "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https"),
                ("x-forwarded-for", "9.9.9.9"),
            ],
        );
        assert_eq!(m.forwarded_for(&lb), ip("2001:db8:cafe::17"));
    }

    #[test]
    fn malformed_headers_are_never_believed() {
        let lb = cidrs(&["10.0.0.0/8"]);
        for bad in ["not-an-ip", "1.2.3.4, garbage", "", "1.2.3.4,,", "999.1.1.1", &"1".repeat(100)] {
            assert_eq!(meta("10.0.0.1:1", &[("x-forwarded-for", bad)]).forwarded_for(&lb), None, "{bad:?}");
        }
        for bad in ["for=unknown", "for=_hidden", "by=1.2.3.4", "for=1.2.3.4;for=5.6.7.8", "garbage"] {
            assert_eq!(meta("10.0.0.1:1", &[("forwarded", bad)]).forwarded_for(&lb), None, "{bad:?}");
        }
    }

    #[test]
    fn records_name_the_peer_the_agent_and_the_tls_identity() {
        let rules = crate::inspect::catalog::builtin().expect("catalog").into_iter().map(|(r, _)| r).collect();
        let scanner = crate::inspect::Scanner::new(rules, "[REDACTED:<rule-id>]").expect("scanner");
        let mut h = HeaderMap::new();
        h.insert(http::header::USER_AGENT, "sdk/1.0".parse().expect("value"));
        let mut ext = http::Extensions::new();
        ext.insert(Peer { addr: Some("192.0.2.4:4000".parse().expect("addr")), tls_identity: Some("svc-a\nx".into()) });
        let mut r = Exchange::new("request", "decision", String::new());
        ClientMeta::of(&ext, &h).fill(&mut r, &scanner, &[]);
        assert_eq!(r.client_addr.as_deref(), Some("192.0.2.4:4000"));
        assert_eq!(r.user_agent.as_deref(), Some("sdk/1.0"));
        assert_eq!(r.tls_identity.as_deref(), Some("svc-a\\u{a}x"), "escaped like any client text");
        assert_eq!(r.forwarded_for, None);
        // No peer (an in-process replay) and no headers: nothing is added.
        let mut r = Exchange::new("request", "decision", String::new());
        ClientMeta::of(&http::Extensions::new(), &HeaderMap::new()).fill(&mut r, &scanner, &[]);
        assert_eq!(
            serde_json::to_string(&r).expect("serialises"),
            r#"{"event":"decision","kind":"request","request_id":""}"#,
            "only what the record had"
        );
    }
}
