//! URL and host parsing, as strict as a policy needs and as lenient as the clients an attacker
//! targets: the host is found the way the WHATWG URL standard (browsers, most HTTP clients) finds it,
//! and where another common parser would see a different host, both hosts are returned so that
//! both are checked.
//!
//! Only what egress decides on is extracted: scheme, host, port and query length. Anything that
//! looks like a URL but has no valid host is an error (the caller denies it: fail closed).

use std::borrow::Cow;
use std::net::IpAddr;

use super::ip::{self, V4};

/// A parsed host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A domain: ASCII lower case, no trailing dot, labels of `[a-z0-9_-]`.
    Domain(String),
    /// An IP address in any spelling; `zoned` if an IPv6 zone id was given.
    Ip { addr: IpAddr, zoned: bool },
    /// The empty host of `file:///path` (the local machine).
    Local,
}

/// How to read a string that has no scheme, and what a scheme is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// A URL in a tool-call argument, handed to some HTTP client: `host:port/path` and
    /// `host/path` name a host, as curl and most libraries read them.
    Lenient,
    /// A URL in a document rendered by a browser (markdown, HTML): a relative reference stays on
    /// the page's own origin; only `//host` (or `\\host`) leaves it. Any `word:` is a scheme.
    Browser,
}

/// What egress needs to know about a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Lower-case scheme; `None` for a scheme-relative (`//host`) or schemeless reference.
    pub scheme: Option<String>,
    /// The host, if the URL has an authority; `None` for opaque (`mailto:`, `data:`) and relative
    /// references.
    pub host: Option<Host>,
    /// A second host another parser would connect to (a backslash read as a plain character).
    pub alt_host: Option<Host>,
    /// Length in bytes of the query string (between `?` and `#`).
    pub query_len: usize,
}

/// Schemes with an authority whose parsing follows the WHATWG "special" rules (backslash is a
/// slash, any number of slashes before the host).
const SPECIAL: [&str; 5] = ["http", "https", "ws", "wss", "ftp"];

/// Schemes a lenient reading recognises as such (so `localhost:8080` is a host, `mailto:x` is not).
const KNOWN: [&str; 16] = [
    "http",
    "https",
    "ws",
    "wss",
    "ftp",
    "ftps",
    "sftp",
    "file",
    "gopher",
    "data",
    "javascript",
    "vbscript",
    "mailto",
    "blob",
    "dict",
    "ldap",
];

/// Parse a URL. `Err` carries why it is not a URL with a checkable host.
pub(crate) fn parse(input: &str, ctx: Context) -> Result<Parsed, &'static str> {
    // WHATWG: strip leading and trailing C0 controls and spaces, remove tabs and newlines anywhere.
    let trimmed = input.trim_matches(|c: char| c <= ' ');
    let s: Cow<'_, str> = if trimmed.contains(['\t', '\n', '\r']) {
        Cow::Owned(trimmed.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect())
    } else {
        Cow::Borrowed(trimmed)
    };
    let s = s.as_ref();
    if s.is_empty() {
        return Err("empty URL");
    }
    match split_scheme(s, ctx) {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if SPECIAL.contains(&scheme.as_str()) {
                let rest = rest.trim_start_matches(['/', '\\']);
                let mut p = authority(rest, true)?;
                p.scheme = Some(scheme);
                Ok(p)
            } else if scheme == "file" {
                let slash = |b: Option<&u8>| matches!(b, Some(b'/' | b'\\'));
                let two = slash(rest.as_bytes().first()) && slash(rest.as_bytes().get(1));
                let mut p = if two && !rest[2..].is_empty() && !slash(rest.as_bytes().get(2)) {
                    authority(&rest[2..], true)?
                } else {
                    Parsed { scheme: None, host: Some(Host::Local), alt_host: None, query_len: 0 }
                };
                // `file://localhost/` is the local machine too.
                if matches!(&p.host, Some(Host::Domain(d)) if d == "localhost") {
                    p.host = Some(Host::Local);
                }
                p.scheme = Some(scheme);
                Ok(p)
            } else if let Some(after) = rest.strip_prefix("//") {
                let mut p = authority(after, false)?;
                p.scheme = Some(scheme);
                Ok(p)
            } else {
                Ok(Parsed { scheme: Some(scheme), host: None, alt_host: None, query_len: query_len(rest) })
            }
        }
        None => {
            let slashes = s.bytes().take_while(|b| matches!(b, b'/' | b'\\')).count();
            match ctx {
                Context::Browser if slashes < 2 => {
                    Ok(Parsed { scheme: None, host: None, alt_host: None, query_len: query_len(s) })
                }
                _ => authority(&s[slashes..], true),
            }
        }
    }
}

/// Parse a bare host as found in a tool argument: `example.com`, `example.com:443`, `10.0.0.1`,
/// `[::1]:80`, `::1`, `fe80::1%eth0`.
pub(crate) fn parse_host_arg(input: &str) -> Result<Host, &'static str> {
    let s = input.trim();
    if !s.starts_with('[') && s.bytes().filter(|&b| b == b':').count() >= 2 {
        return match ip::parse_ipv6(s) {
            Some((a, zoned)) => Ok(Host::Ip { addr: IpAddr::V6(a), zoned }),
            None => Err("invalid IPv6 address"),
        };
    }
    let p = authority(s, true)?;
    if p.query_len > 0 || s.contains(['/', '\\', '?', '#']) {
        return Err("a host was expected, not a URL path");
    }
    p.host.ok_or("empty host")
}

/// The scheme and what follows its `:`, if the string starts with one.
fn split_scheme(s: &str, ctx: Context) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = b.iter().position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))?;
    if b[end] != b':' {
        return None;
    }
    let (scheme, rest) = (&s[..end], &s[end + 1..]);
    if ctx == Context::Lenient && !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(scheme)) {
        // `localhost:8080/x`, `example.com:443`: a host and a port, as curl reads it.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && matches!(rest.as_bytes().get(digits), None | Some(b'/' | b'\\' | b'?' | b'#')) {
            return None;
        }
    }
    Some((scheme, rest))
}

fn query_len(rest: &str) -> usize {
    let before_fragment = rest.split('#').next().unwrap_or("");
    before_fragment.find('?').map_or(0, |q| before_fragment.len() - q - 1)
}

/// Parse from the start of the authority: userinfo, host, port; then the query length.
fn authority(s: &str, special: bool) -> Result<Parsed, &'static str> {
    let end_of = |with_backslash: bool| {
        s.find(|c: char| matches!(c, '/' | '?' | '#') || (with_backslash && c == '\\')).unwrap_or(s.len())
    };
    let end = end_of(special);
    let host = host_port(&s[..end])?;
    // Where a parser that does not treat `\` as `/` would end the authority, and what host it sees
    // (`http://allowed.com\@169.254.169.254/`). Refused if it cannot be parsed.
    let alt_host = if special {
        let alt_end = end_of(false);
        if alt_end != end {
            let alt = &s[..alt_end];
            let alt = alt.rsplit_once('@').map_or(alt, |(_, h)| h);
            let alt = host_port(alt.replace('\\', "/").split('/').next().unwrap_or(""))
                .map_err(|_| "backslash in the authority that another parser reads differently")?;
            (alt != host).then_some(alt)
        } else {
            None
        }
    } else {
        None
    };
    Ok(Parsed { scheme: None, host: Some(host), alt_host, query_len: query_len(&s[end..]) })
}

/// `[userinfo@]host[:port]` → the host.
fn host_port(auth: &str) -> Result<Host, &'static str> {
    let hostport = match auth.split_once('@') {
        Some((_, rest)) if rest.contains('@') => return Err("more than one `@` in the authority"),
        Some((_, rest)) => rest,
        None => auth,
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let close = inner.find(']').ok_or("unclosed `[` in the host")?;
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("text after an IPv6 address"),
        };
        let (addr, zoned) = ip::parse_ipv6(&inner[..close]).ok_or("invalid IPv6 address")?;
        (Host::Ip { addr: IpAddr::V6(addr), zoned }, port)
    } else {
        let (h, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        (domain_or_ipv4(h)?, port)
    };
    if let Some(p) = port {
        if !p.is_empty() && (!p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u32>().map_or(true, |n| n > 65535)) {
            return Err("invalid port");
        }
    }
    Ok(host)
}

/// Percent-decode, lower-case and classify a non-bracketed host.
fn domain_or_ipv4(raw: &str) -> Result<Host, &'static str> {
    if raw.is_empty() {
        return Err("empty host");
    }
    let decoded = percent_decode(raw)?;
    if !decoded.is_ascii() {
        // Browsers map these through IDNA (full-width digits and dots become ASCII ones), which we
        // do not reimplement: refuse, and ask for the `xn--` form instead.
        return Err("non-ASCII host; write internationalised names in their `xn--` form");
    }
    let lower = decoded.to_ascii_lowercase();
    if !lower.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("forbidden character in the host");
    }
    // Non-special schemes have opaque hosts in WHATWG, but clients still resolve them: IPv4
    // spellings are parsed whatever the scheme.
    match ip::parse_ipv4(&lower) {
        V4::Addr(a) => return Ok(Host::Ip { addr: IpAddr::V4(a), zoned: false }),
        V4::Invalid => return Err("looks like an IPv4 address but is not a valid one"),
        V4::NotIpv4 => {}
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err("invalid domain name (empty or over-long label)");
    }
    Ok(Host::Domain(name.to_owned()))
}

/// Decode `%XX` sequences; a `%` not followed by two hex digits is an error (forbidden in hosts).
fn percent_decode(s: &str) -> Result<Cow<'_, str>, &'static str> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => out.push(v),
                None => return Err("invalid percent-encoding in the host"),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| "percent-encoded host is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str, ctx: Context) -> Result<Option<Host>, &'static str> {
        parse(s, ctx).map(|p| p.host)
    }

    fn d(s: &str) -> Result<Option<Host>, &'static str> {
        Ok(Some(Host::Domain(s.to_owned())))
    }

    #[test]
    fn hosts_as_a_browser_finds_them() {
        let l = Context::Lenient;
        assert_eq!(host("https://Example.COM./x?y#z", l), d("example.com"));
        assert_eq!(host("http://allowed.com@evil.com/", l), d("evil.com"));
        assert_eq!(host("http://evil.com#@allowed.com", l), d("evil.com"));
        assert_eq!(host("http:\\\\evil.com\\x", l), d("evil.com"));
        assert_eq!(host("http:evil.com", l), d("evil.com"));
        assert_eq!(host("HTTP:///evil.com", l), d("evil.com"));
        assert_eq!(host("//evil.com/x", l), d("evil.com"));
        assert_eq!(host("evil.com:8080/x", l), d("evil.com"));
        assert_eq!(host("localhost:8080", l), d("localhost"));
        assert_eq!(host("ht\ttp://ev\nil.com", l), d("evil.com"));
        assert_eq!(host("gopher://evil.com:70/_x", l), d("evil.com"));
        assert_eq!(host("mailto:a@b.com", l), Ok(None));
        assert_eq!(host("file:///etc/passwd", l), Ok(Some(Host::Local)));
        assert_eq!(host("file://localhost/etc/passwd", l), Ok(Some(Host::Local)));
        assert!(host("http://a@b@c/", l).is_err());
        assert!(host("http://exa mple.com/", l).is_err());
        assert!(host("http://ex%ample.com/", l).is_err());
        assert!(host("http://example.com:99999/", l).is_err());
        assert!(host("http://example.com:8o/", l).is_err());
        assert!(host("http:///", l).is_err());
        assert!(host("http://a..b/", l).is_err());
        assert!(host("http://[::1/", l).is_err());
        assert!(host("http://１２７.０.０.１/", l).is_err());
    }

    #[test]
    fn browser_context_keeps_relative_references_on_the_page() {
        let b = Context::Browser;
        assert_eq!(host("/docs/page?q=1", b), Ok(None));
        assert_eq!(host("page.html", b), Ok(None));
        assert_eq!(host("#top", b), Ok(None));
        assert_eq!(host("/\\evil.com/x", b), d("evil.com"));
        assert_eq!(host(" //evil.com", b), d("evil.com"));
        assert_eq!(parse("localhost:8080/x", b).map(|p| p.scheme), Ok(Some("localhost".to_owned())));
    }

    #[test]
    fn backslash_differential_yields_both_hosts() {
        let p = parse("http://allowed.com\\@169.254.169.254/", Context::Lenient);
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.host, Some(Host::Domain("allowed.com".into())));
        assert!(matches!(p.alt_host, Some(Host::Ip { .. })));
    }

    #[test]
    fn query_length() {
        let q = |s: &str| parse(s, Context::Lenient).map(|p| p.query_len);
        assert_eq!(q("https://a.com/x?abc#def?ghij"), Ok(3));
        assert_eq!(q("https://a.com?"), Ok(0));
        assert_eq!(q("https://a.com#?abc"), Ok(0));
    }

    #[test]
    fn host_arguments() {
        assert_eq!(parse_host_arg("Example.com:443"), Ok(Host::Domain("example.com".into())));
        assert!(matches!(parse_host_arg("fe80::1%eth0"), Ok(Host::Ip { zoned: true, .. })));
        assert!(matches!(parse_host_arg("[::1]:80"), Ok(Host::Ip { zoned: false, .. })));
        assert!(parse_host_arg("example.com/path").is_err());
    }
}
