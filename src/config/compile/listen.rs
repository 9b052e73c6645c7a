//! `[listen]` (addresses, trusted proxies, TLS) and `[limits]`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{path, positive};
use crate::config::raw::{RawLimits, RawListen};
use crate::config::validate::Problems;
use crate::config::{forensics, tls, Limits, Listen};

/// `[listen]`.
pub(super) fn listen(raw: &RawListen, base: &Path, problems: &mut Problems) -> Listen {
    Listen {
        proxy: addr(raw.proxy.as_deref(), "127.0.0.1:8080", "proxy", problems),
        admin: addr(raw.admin.as_deref(), "127.0.0.1:9090", "admin", problems),
        trusted_proxies: forensics::trusted_proxies(raw.trusted_proxies.as_deref().unwrap_or_default(), problems),
        proxy_tls: tls::compile(raw.proxy_tls.as_ref(), "proxy_tls", base, problems),
        admin_tls: tls::compile(raw.admin_tls.as_ref(), "admin_tls", base, problems),
        tls_watch: tls::watch_interval(raw.tls_watch_ms, problems),
    }
}

/// A listener address (`[listen] <key>`), or `default` when absent or wrong.
fn addr(v: Option<&str>, default: &str, key: &str, problems: &mut Problems) -> SocketAddr {
    let s = v.unwrap_or(default);
    s.parse().unwrap_or_else(|_| {
        problems.add(
            0,
            path(["listen".into(), key.into()]),
            format!("`{s}` is not an address"),
            Some("write host:port with an IP, e.g. 127.0.0.1:8080".into()),
        );
        default.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    })
}

/// `[limits]`: every limit a positive number named as in the table; a `_ms` one is a duration.
pub(super) fn limits(l: &RawLimits, problems: &mut Problems) -> Limits {
    let d = Limits::default();
    let lim = |k: &str| path(["limits".into(), k.into()]);
    let ms = Duration::from_millis;
    macro_rules! num {
        ($key:ident, $default:expr) => {
            positive(l.$key, $default as u64, 0, lim(stringify!($key)), problems)
        };
    }
    macro_rules! dur {
        ($key:ident, $default:expr) => {
            ms(num!($key, $default.as_millis()))
        };
    }
    let limits = Limits {
        max_request_body: num!(max_request_body_bytes, d.max_request_body) as usize,
        max_response_body: num!(max_response_body_bytes, d.max_response_body) as usize,
        header_read_timeout: dur!(header_read_timeout_ms, d.header_read_timeout),
        upstream_connect_timeout: dur!(upstream_connect_timeout_ms, d.upstream_connect_timeout),
        upstream_timeout: dur!(upstream_timeout_ms, d.upstream_timeout),
        stream_idle_timeout: dur!(stream_idle_timeout_ms, d.stream_idle_timeout),
        shutdown_drain: dur!(shutdown_drain_ms, d.shutdown_drain),
        max_concurrent_requests: num!(max_concurrent_requests, d.max_concurrent_requests) as usize,
        first_byte_timeout: dur!(first_byte_timeout_ms, d.first_byte_timeout),
        idle_timeout: dur!(idle_timeout_ms, d.idle_timeout),
        h2_keep_alive_interval: dur!(h2_keep_alive_interval_ms, d.h2_keep_alive_interval),
        h2_keep_alive_timeout: dur!(h2_keep_alive_timeout_ms, d.h2_keep_alive_timeout),
        h2_max_concurrent_streams: num!(h2_max_concurrent_streams, d.h2_max_concurrent_streams).min(u32::MAX.into())
            as u32,
        max_connections: num!(max_connections, d.max_connections) as usize,
        admin_max_connections: num!(admin_max_connections, d.admin_max_connections) as usize,
        request_body_timeout: dur!(request_body_timeout_ms, d.request_body_timeout),
        min_request_body_rate: num!(min_request_body_bytes_per_sec, d.min_request_body_rate),
        max_buffered_request_bytes: num!(max_buffered_request_bytes, d.max_buffered_request_bytes) as usize,
    };
    if limits.max_buffered_request_bytes < limits.max_request_body {
        problems.add(
            0,
            lim("max_buffered_request_bytes"),
            format!(
                "is smaller than max_request_body_bytes ({}): no body of the largest allowed size could ever be read",
                limits.max_request_body
            ),
            Some("raise max_buffered_request_bytes (default 256 MiB) or lower max_request_body_bytes".into()),
        );
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::super::tests::{located, raw};
    use super::*;

    #[test]
    fn addresses_and_defaults() {
        let text = "[listen]\nproxy = \"0.0.0.0:1\"\n";
        let mut p = Problems::default();
        let l = listen(&raw(text).listen, Path::new("."), &mut p);
        assert!(p.is_empty());
        assert_eq!(l.proxy, "0.0.0.0:1".parse::<SocketAddr>().expect("addr"));
        assert_eq!(l.admin, "127.0.0.1:9090".parse::<SocketAddr>().expect("addr"));
        assert!(l.proxy_tls.is_none() && l.admin_tls.is_none() && l.trusted_proxies.is_empty());
        assert_eq!(l.tls_watch, Some(Duration::from_millis(2000)));
    }

    #[test]
    fn a_bad_address_is_reported_at_its_key_and_the_default_kept() {
        let text = "[listen]\nadmin = \"127.0.0.1:9\"\nproxy = \"not-an-address\"\n";
        let mut p = Problems::default();
        let l = listen(&raw(text).listen, Path::new("."), &mut p);
        assert_eq!(l.proxy, "127.0.0.1:8080".parse::<SocketAddr>().expect("addr"));
        let found = located(p, text);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].message.as_str()), (3, "`not-an-address` is not an address"));
        assert_eq!(found[0].hint.as_deref(), Some("write host:port with an IP, e.g. 127.0.0.1:8080"));
    }

    #[test]
    fn limits_take_the_policy_values_and_defaults() {
        let text = "[limits]\nmax_request_body_bytes = 100\nupstream_timeout_ms = 1500\n";
        let mut p = Problems::default();
        let l = limits(&raw(text).limits, &mut p);
        assert!(p.is_empty());
        assert_eq!(l.max_request_body, 100);
        assert_eq!(l.upstream_timeout, Duration::from_millis(1500));
        assert_eq!(l.max_response_body, Limits::default().max_response_body);
        assert_eq!(l.h2_max_concurrent_streams, 100);
    }

    #[test]
    fn bad_limits_are_reported_with_the_default_named() {
        let text = "[limits]\nidle_timeout_ms = 0\nmax_request_body_bytes = 10\nmax_buffered_request_bytes = 5\n";
        let mut p = Problems::default();
        let l = limits(&raw(text).limits, &mut p);
        assert_eq!(l.idle_timeout, Limits::default().idle_timeout);
        let found = located(p, text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].line, found[0].message.as_str()), (2, "must be a positive number, not 0"));
        assert_eq!(found[0].hint.as_deref(), Some("the default is 60000"));
        assert_eq!(found[1].line, 4);
        assert_eq!(
            found[1].message,
            "is smaller than max_request_body_bytes (10): no body of the largest allowed size could ever be read"
        );
    }
}
