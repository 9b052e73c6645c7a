//! Egress: where URLs in tool-call arguments and in model output may point.
//!
//! The policy's `[egress]` table ([`EgressConfig`]) is compiled once into [`EgressRules`], which
//! answers three questions:
//!
//! - [`EgressRules::check_url`] / [`EgressRules::check_host`] / [`EgressRules::check_ip`]: may a
//!   tool fetch this? A [`Verdict`] with a typed [`DenyReason`] (rule id + message for the audit).
//! - [`EgressRules::check_json`]: every URL, host and IP literal in a tool call's arguments.
//! - [`EgressRules::neutralize_markdown`]: model output with links and images that point outside the
//!   allowlist (or smuggle data in a long query string) made inert.
//!
//! # The order of the checks
//!
//! 1. An egress switch (`block_egress`, the `extra_denied_hosts` callback) blocks the host.
//! 2. The scheme is one of `allowed_schemes` (a schemeless `//host` counts as `https`).
//! 3. The host parses — as a browser parses it, and as a backslash-naive client would too
//!    (`http://ok.com\@169.254.169.254/`): if the two disagree, both must pass. Anything that looks
//!    like a URL but does not parse is denied (fail closed).
//! 4. Cloud metadata endpoints ([`ip::METADATA_IPS`], [`METADATA_NAMES`]): always denied.
//! 5. `deny_domains` / `deny_cidrs`.
//! 6. Built-in internal classes, lifted only by `allow_private = true`: loopback (`127/8`, `::1`,
//!    `localhost`, `*.localhost`), private (RFC 1918, CGNAT `100.64/10`, ULA `fc00::/7`), link-local
//!    (`169.254/16`, `fe80::/10`), unspecified (`0/8`, `::`), multicast/reserved (`224/3`, `ff00::/8`)
//!    and internal names ([`INTERNAL_SUFFIXES`], single-label names, wildcard-DNS services).
//!    Every IP spelling a browser accepts is normalised first: decimal `2852039166`, hex
//!    `0xA9FEA9FE`, octal `0251.0376.0251.0376`, short `127.1`, IPv4-mapped and NAT64 IPv6,
//!    percent-encoded hosts, trailing dots, upper case.
//! 7. `allowlist` mode: the host must match `allow_domains` (exact or `*.example.com`, which matches
//!    subdomains but not `example.com` itself) or its address `allow_cidrs`. `denylist` mode: allowed.
//!
//! Deciding on the text of a URL cannot see DNS: a name that is allowed may still resolve to a
//! private address (DNS rebinding). Whatever connects should check the resolved address with
//! [`EgressRules::check_ip`] too.

mod find;
mod ip;
mod markdown;
mod url;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

pub use find::find_urls;
pub use ip::{Cidr, METADATA_IPS};
pub use markdown::{LinkKind, Neutralized, IMAGE_REMOVED, LINK_REMOVED};

use url::{Context, Host};

/// Host names of cloud metadata services, always denied.
pub const METADATA_NAMES: [&str; 6] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Domain suffixes that only resolve inside a network (RFC 6762 `.local`, RFC 8375 `home.arpa`,
/// ICANN's `.internal`, `.localdomain`), denied like private addresses.
pub const INTERNAL_SUFFIXES: [&str; 4] = ["internal", "local", "localdomain", "home.arpa"];

/// Public DNS services that resolve names to any address, loopback included (`127.0.0.1.nip.io`,
/// `lvh.me`): internal by construction.
pub const WILDCARD_DNS: [&str; 6] = ["nip.io", "sslip.io", "xip.io", "localtest.me", "lvh.me", "vcap.me"];

/// Which hosts pass when no rule names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressMode {
    /// Only `allow_domains` and `allow_cidrs` pass (the default: fail closed).
    #[default]
    Allowlist,
    /// Everything passes except what is denied (explicitly or by the built-in classes).
    Denylist,
}

/// The policy's `[egress]` table, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// `allowlist` or `denylist`.
    pub mode: EgressMode,
    /// Domains that pass in allowlist mode: `example.com` (exact) or `*.example.com` (subdomains).
    pub allow_domains: Vec<String>,
    /// Domains always denied, same syntax; they win over `allow_domains`.
    pub deny_domains: Vec<String>,
    /// Address blocks that pass in allowlist mode (`203.0.113.0/24`, `2001:db8::/32`).
    pub allow_cidrs: Vec<String>,
    /// Address blocks always denied.
    pub deny_cidrs: Vec<String>,
    /// Schemes that may be used (`https` by default).
    pub allowed_schemes: Vec<String>,
    /// Lift the built-in denial of private, loopback and link-local addresses and internal names
    /// (never of metadata endpoints).
    pub allow_private: bool,
    /// Links in model output whose query string is longer than this (bytes) are neutralised, even
    /// to allowed hosts: a query string is where exfiltrated data rides. 0: any query.
    pub max_query_len: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            mode: EgressMode::Allowlist,
            allow_domains: Vec::new(),
            deny_domains: Vec::new(),
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            allowed_schemes: vec!["https".to_owned()],
            allow_private: false,
            max_query_len: 64,
        }
    }
}

/// Schemes a policy may allow. `javascript:` and `vbscript:` are never allowed.
const ALLOWABLE_SCHEMES: [&str; 9] = ["http", "https", "ws", "wss", "ftp", "file", "gopher", "data", "mailto"];

/// The answer for one URL, host or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// May be fetched / linked.
    Allow,
    /// Denied, and why.
    Deny(DenyReason),
}

impl Verdict {
    /// Whether this is [`Verdict::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Verdict::Allow
    }
}

/// Why a URL was denied. Carries no part of the URL: what is audited never holds the data a link
/// tried to smuggle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// An egress switch (`block_egress`) names the host.
    SwitchBlocked,
    /// The scheme is not in `allowed_schemes`.
    Scheme,
    /// Looks like a URL but has no valid host (the detail says what is wrong).
    Unparseable(&'static str),
    /// A cloud metadata endpoint.
    Metadata,
    /// Loopback: `127/8`, `::1`, `localhost`, `*.localhost`, `file://` without a host.
    Loopback,
    /// RFC 1918, CGNAT `100.64/10`, IPv6 unique-local and site-local.
    PrivateAddress,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// Multicast, broadcast, reserved.
    Reserved,
    /// A name that only resolves internally (single label, `.internal`, `.local`…) or through a
    /// wildcard-DNS service.
    InternalName,
    /// Matches `deny_domains`.
    DeniedDomain,
    /// Inside `deny_cidrs`.
    DeniedCidr,
    /// Allowlist mode and not in `allow_domains` / `allow_cidrs`.
    NotAllowlisted,
    /// A link in model output with a query string longer than `max_query_len`.
    LongQuery,
}

impl DenyReason {
    /// Stable id for audit records and metrics.
    pub fn rule_id(self) -> crate::rules::Rule {
        match self {
            DenyReason::SwitchBlocked => crate::rules::Rule::EgressSwitchBlocked,
            DenyReason::Scheme => crate::rules::Rule::EgressScheme,
            DenyReason::Unparseable(_) => crate::rules::Rule::EgressUnparseable,
            DenyReason::Metadata => crate::rules::Rule::EgressMetadata,
            DenyReason::Loopback => crate::rules::Rule::EgressLoopback,
            DenyReason::PrivateAddress => crate::rules::Rule::EgressPrivateAddress,
            DenyReason::LinkLocal => crate::rules::Rule::EgressLinkLocal,
            DenyReason::Unspecified => crate::rules::Rule::EgressUnspecified,
            DenyReason::Reserved => crate::rules::Rule::EgressReserved,
            DenyReason::InternalName => crate::rules::Rule::EgressInternalName,
            DenyReason::DeniedDomain => crate::rules::Rule::EgressDeniedDomain,
            DenyReason::DeniedCidr => crate::rules::Rule::EgressDeniedCidr,
            DenyReason::NotAllowlisted => crate::rules::Rule::EgressNotAllowlisted,
            DenyReason::LongQuery => crate::rules::Rule::EgressLongQuery,
        }
    }

    /// A sentence for people.
    pub fn message(self) -> &'static str {
        match self {
            DenyReason::SwitchBlocked => "the host is blocked by an egress switch",
            DenyReason::Scheme => "the URL scheme is not allowed by the egress policy",
            DenyReason::Unparseable(_) => "the URL cannot be parsed safely",
            DenyReason::Metadata => "the host is a cloud metadata endpoint",
            DenyReason::Loopback => "the host is a loopback address",
            DenyReason::PrivateAddress => "the host is a private network address",
            DenyReason::LinkLocal => "the host is a link-local address",
            DenyReason::Unspecified => "the host is an unspecified address",
            DenyReason::Reserved => "the host is a multicast or reserved address",
            DenyReason::InternalName => "the host name only resolves inside a network",
            DenyReason::DeniedDomain => "the domain is denied by the egress policy",
            DenyReason::DeniedCidr => "the address is in a denied range",
            DenyReason::NotAllowlisted => "the host is not in the egress allowlist",
            DenyReason::LongQuery => "the link carries a query string longer than the policy allows",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::Unparseable(detail) => write!(f, "{} ({detail})", self.message()),
            _ => f.write_str(self.message()),
        }
    }
}

/// A set of domain patterns: exact names and `*.suffix` wildcards.
#[derive(Debug, Clone, Default)]
struct DomainSet {
    exact: HashSet<String>,
    /// `example.com` for `*.example.com`.
    wildcard: HashSet<String>,
}

impl DomainSet {
    fn matches(&self, host: &str) -> bool {
        self.exact.contains(host) || parents(host).any(|p| self.wildcard.contains(p))
    }
}

/// The strict parent domains of `host`: `a.b.c` → `b.c`, `c`.
fn parents(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.').map(move |(i, _)| &host[i + 1..])
}

/// `host` itself and its parents.
fn self_and_parents(host: &str) -> impl Iterator<Item = &str> {
    std::iter::once(host).chain(parents(host))
}

/// A domain pattern from the policy, normalised, or a message with a hint.
fn domain_pattern(raw: &str) -> Result<(bool, String), String> {
    let p = raw.trim().to_ascii_lowercase();
    let p = p.strip_suffix('.').unwrap_or(&p);
    let (wild, name) = match p.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    if name.is_empty() || p == "*" {
        return Err(format!("`{raw}` matches everything; use mode = \"denylist\" instead"));
    }
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "`{raw}` is not a domain pattern; write `example.com` (exact) or `*.example.com` (its subdomains), \
             ASCII only (`xn--` for internationalised names)"
        ));
    }
    if !matches!(ip::parse_ipv4(name), ip::V4::NotIpv4) {
        return Err(format!("`{raw}` is an IP address; put addresses in allow_cidrs / deny_cidrs"));
    }
    Ok((wild, name.to_owned()))
}

/// The compiled `[egress]` rules. Immutable; built once per policy.
#[derive(Debug, Clone)]
pub struct EgressRules {
    mode: EgressMode,
    allow: DomainSet,
    deny: DomainSet,
    allow_cidrs: Vec<Cidr>,
    deny_cidrs: Vec<Cidr>,
    schemes: Vec<&'static str>,
    allow_private: bool,
    max_query_len: usize,
}

// === impl EgressRules ===

impl EgressRules {
    /// Validate and compile, collecting every problem (each names the key and says what to write).
    pub fn compile(cfg: &EgressConfig) -> Result<EgressRules, Vec<String>> {
        let mut errors = Vec::new();
        let mut sets = [DomainSet::default(), DomainSet::default()];
        for (set, (key, list)) in
            sets.iter_mut().zip([("allow_domains", &cfg.allow_domains), ("deny_domains", &cfg.deny_domains)])
        {
            for (i, raw) in list.iter().enumerate() {
                match domain_pattern(raw) {
                    Ok((true, name)) => {
                        set.wildcard.insert(name);
                    }
                    Ok((false, name)) => {
                        if key == "allow_domains" && !cfg.allow_private {
                            if let Some(r) = builtin_name(&name) {
                                errors.push(format!(
                                    "egress.{key}[{i}]: `{raw}` is denied by default ({}); set allow_private = true to reach it",
                                    r.message()
                                ));
                            }
                        }
                        set.exact.insert(name);
                    }
                    Err(e) => errors.push(format!("egress.{key}[{i}]: {e}")),
                }
            }
        }
        let [allow, deny] = sets;
        let mut cidrs = [Vec::new(), Vec::new()];
        for (out, (key, list)) in
            cidrs.iter_mut().zip([("allow_cidrs", &cfg.allow_cidrs), ("deny_cidrs", &cfg.deny_cidrs)])
        {
            for (i, raw) in list.iter().enumerate() {
                match raw.trim().parse::<Cidr>() {
                    Ok(c) => {
                        if key == "allow_cidrs" {
                            match c.builtin_class() {
                                Some(DenyReason::Metadata) => errors.push(format!(
                                    "egress.{key}[{i}]: `{raw}` is a cloud metadata endpoint, which is always denied"
                                )),
                                Some(r) if !cfg.allow_private => errors.push(format!(
                                    "egress.{key}[{i}]: `{raw}` is denied by default ({}); set allow_private = true to reach it",
                                    r.message()
                                )),
                                _ => {}
                            }
                        }
                        out.push(c);
                    }
                    Err(e) => errors.push(format!("egress.{key}[{i}]: {e}")),
                }
            }
        }
        let [allow_cidrs, deny_cidrs] = cidrs;
        let mut schemes = Vec::new();
        for (i, raw) in cfg.allowed_schemes.iter().enumerate() {
            let s = raw.trim().trim_end_matches("://").trim_end_matches(':').to_ascii_lowercase();
            match ALLOWABLE_SCHEMES.iter().find(|k| **k == s) {
                Some(k) => schemes.push(*k),
                None if s == "javascript" || s == "vbscript" => {
                    errors.push(format!("egress.allowed_schemes[{i}]: `{raw}` runs code and can never be allowed"))
                }
                None => errors.push(format!(
                    "egress.allowed_schemes[{i}]: unknown scheme `{raw}`; known: {}",
                    ALLOWABLE_SCHEMES.join(", ")
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EgressRules {
            mode: cfg.mode,
            allow,
            deny,
            allow_cidrs,
            deny_cidrs,
            schemes,
            allow_private: cfg.allow_private,
            max_query_len: cfg.max_query_len,
        })
    }

    /// The mode.
    pub fn mode(&self) -> EgressMode {
        self.mode
    }

    /// The longest query string a link in model output may carry.
    pub fn max_query_len(&self) -> usize {
        self.max_query_len
    }

    /// May a tool fetch `url`? `extra_denied_hosts` is asked about the normalised host and each of
    /// its parent domains (`a.b.com`, `b.com`, `com`), or an address in its canonical form (and the
    /// IPv4 address an IPv6 one carries): the egress switches.
    ///
    /// Read as an HTTP client reads a tool argument: `host:port/path` and `//host` name a host.
    pub fn check_url(&self, url: &str, extra_denied_hosts: &dyn Fn(&str) -> bool) -> Verdict {
        match url::parse(url, Context::Lenient) {
            Ok(p) => self.check_parsed(&p, extra_denied_hosts),
            Err(e) => Verdict::Deny(DenyReason::Unparseable(e)),
        }
    }

    /// May a tool connect to `host` (`example.com`, `example.com:443`, `10.0.0.1`, `[::1]:80`,
    /// `fe80::1%eth0`, or any IP spelling)? Schemes do not apply.
    pub fn check_host(&self, host: &str, extra_denied_hosts: &dyn Fn(&str) -> bool) -> Verdict {
        match url::parse_host_arg(host) {
            Ok(h) => self.check_host_value(&h, extra_denied_hosts),
            Err(e) => Verdict::Deny(DenyReason::Unparseable(e)),
        }
    }

    /// May a connection go to this address (after DNS resolution, for instance)?
    pub fn check_ip(&self, ip: IpAddr, extra_denied_hosts: &dyn Fn(&str) -> bool) -> Verdict {
        self.check_host_value(&Host::Ip { addr: ip, zoned: false }, extra_denied_hosts)
    }

    /// The verdict for a link in a rendered document (markdown, HTML): relative references stay on
    /// the page and pass; a query longer than `max_query_len` is denied even to an allowed host.
    pub(crate) fn check_link(&self, url: &str, extra: &dyn Fn(&str) -> bool) -> Verdict {
        if url.trim().is_empty() {
            return Verdict::Allow; // `[x]()`: the page itself
        }
        let p = match url::parse(url, Context::Browser) {
            Ok(p) => p,
            Err(e) => return Verdict::Deny(DenyReason::Unparseable(e)),
        };
        if p.scheme.is_none() && p.host.is_none() {
            return Verdict::Allow;
        }
        match self.check_parsed(&p, extra) {
            Verdict::Allow if p.query_len > self.max_query_len => Verdict::Deny(DenyReason::LongQuery),
            v => v,
        }
    }

    fn check_parsed(&self, p: &url::Parsed, extra: &dyn Fn(&str) -> bool) -> Verdict {
        let scheme_ok = match p.scheme.as_deref() {
            Some(s) => self.schemes.contains(&s),
            None => self.schemes.contains(&"https") || self.schemes.contains(&"http"),
        };
        if !scheme_ok {
            return Verdict::Deny(DenyReason::Scheme);
        }
        for h in [&p.host, &p.alt_host].into_iter().flatten() {
            if let v @ Verdict::Deny(_) = self.check_host_value(h, extra) {
                return v;
            }
        }
        Verdict::Allow
    }

    fn check_host_value(&self, host: &Host, extra: &dyn Fn(&str) -> bool) -> Verdict {
        let deny = Verdict::Deny;
        match host {
            Host::Local => {
                if self.allow_private {
                    Verdict::Allow
                } else {
                    deny(DenyReason::Loopback)
                }
            }
            Host::Domain(name) => {
                if self_and_parents(name).any(extra) {
                    return deny(DenyReason::SwitchBlocked);
                }
                if METADATA_NAMES.contains(&name.as_str()) {
                    return deny(DenyReason::Metadata);
                }
                if self.deny.matches(name) {
                    return deny(DenyReason::DeniedDomain);
                }
                if !self.allow_private {
                    if let Some(r) = builtin_name(name) {
                        return deny(r);
                    }
                }
                match self.mode {
                    EgressMode::Allowlist if !self.allow.matches(name) => deny(DenyReason::NotAllowlisted),
                    _ => Verdict::Allow,
                }
            }
            Host::Ip { addr, zoned } => {
                let mapped = match addr {
                    IpAddr::V6(v6) => ip::embedded_v4(*v6).map(IpAddr::V4),
                    IpAddr::V4(_) => None,
                };
                if std::iter::once(*addr).chain(mapped).any(|a| extra(&a.to_string())) {
                    return deny(DenyReason::SwitchBlocked);
                }
                let class = ip::classify(*addr);
                if class == Some(DenyReason::Metadata) {
                    return deny(DenyReason::Metadata);
                }
                if self.deny_cidrs.iter().any(|c| c.contains(*addr)) {
                    return deny(DenyReason::DeniedCidr);
                }
                if let Some(r) = class.filter(|_| !self.allow_private) {
                    return deny(r);
                }
                if *zoned && class != Some(DenyReason::LinkLocal) {
                    // Zone ids only mean something on link-local addresses.
                    return deny(DenyReason::Unparseable("IPv6 zone id on a non-link-local address"));
                }
                match self.mode {
                    EgressMode::Allowlist if !self.allow_cidrs.iter().any(|c| c.contains(*addr)) => {
                        deny(DenyReason::NotAllowlisted)
                    }
                    _ => Verdict::Allow,
                }
            }
        }
    }

    /// Rewrite model output so that no link or image points outside the egress rules, or carries a
    /// query longer than `max_query_len`: images (`![]()`, `<img>`, `srcset`, CSS `url()`) become
    /// [`IMAGE_REMOVED`]; links (`[text](url)`, `[ref]: url` definitions, `<url>` autolinks,
    /// `<a href>`, bare URLs a renderer would linkify) keep their text and lose the URL
    /// ([`LINK_REMOVED`]). Inline code spans and fenced code blocks are left alone: renderers show
    /// them literally. `None` when nothing changed (the clean path allocates nothing).
    pub fn neutralize_markdown(
        &self,
        text: &str,
        extra_denied_hosts: &dyn Fn(&str) -> bool,
    ) -> Option<(String, Vec<Neutralized>)> {
        markdown::neutralize(self, text, extra_denied_hosts)
    }

    /// Every URL, host and IP literal in a tool call's arguments that egress denies, as (JSON
    /// pointer, reason). A string is checked whole when it looks like a URL or an address (or its
    /// key names one: `url`, `host`, `endpoint`, `ip`…), and otherwise for URLs inside it
    /// ([`find_urls`]). Numbers under such keys are checked as hosts (`{"ip": 2852039166}`).
    pub fn check_json(
        &self,
        value: &serde_json::Value,
        extra_denied_hosts: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, DenyReason)> {
        let mut out = Vec::new();
        let mut pointer = String::new();
        self.walk_json(value, false, &mut pointer, &mut out, extra_denied_hosts, 0);
        out
    }

    fn walk_json(
        &self,
        v: &serde_json::Value,
        host_key: bool,
        pointer: &mut String,
        out: &mut Vec<(String, DenyReason)>,
        extra: &dyn Fn(&str) -> bool,
        depth: usize,
    ) {
        use serde_json::Value;
        if depth > 128 {
            out.push((pointer.clone(), DenyReason::Unparseable("arguments nested too deeply")));
            return;
        }
        let len = pointer.len();
        match v {
            Value::String(s) => {
                if let Some(r) = self.check_arg_string(s, host_key, extra) {
                    out.push((pointer.clone(), r));
                }
            }
            Value::Number(n) if host_key => {
                if let Verdict::Deny(r) = self.check_host(&n.to_string(), extra) {
                    out.push((pointer.clone(), r));
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    self.walk_json(item, host_key, pointer, out, extra, depth + 1);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    pointer.push('/');
                    pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    self.walk_json(item, is_host_key(k), pointer, out, extra, depth + 1);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn check_arg_string(&self, s: &str, host_key: bool, extra: &dyn Fn(&str) -> bool) -> Option<DenyReason> {
        let t = s.trim();
        if t.is_empty() {
            return None;
        }
        if !t.contains(char::is_whitespace) && (host_key || looks_like_address(t)) {
            return match self.check_url(t, extra) {
                Verdict::Deny(r) => Some(r),
                Verdict::Allow => None,
            };
        }
        find_urls(s).into_iter().find_map(|r| match self.check_url(&s[r], extra) {
            Verdict::Deny(reason) => Some(reason),
            Verdict::Allow => None,
        })
    }
}

/// The built-in denial of a domain name (lifted by `allow_private`), if any.
fn builtin_name(name: &str) -> Option<DenyReason> {
    let under = |list: &[&str]| self_and_parents(name).any(|p| list.contains(&p));
    if under(&["localhost", "ip6-localhost", "ip6-loopback"]) {
        Some(DenyReason::Loopback)
    } else if !name.contains('.') || under(&INTERNAL_SUFFIXES) || under(&WILDCARD_DNS) {
        Some(DenyReason::InternalName)
    } else {
        None
    }
}

/// Whether a JSON key names a URL or an address: one of its words (split at `_`, `-`, `.` and
/// camelCase) is `url`, `uri`, `href`, `link`, `src`, `endpoint`, `host`, `hostname`, `domain`,
/// `ip`, `addr`, `server`, `webhook`, `callback`, `origin`, `proxy`, `redirect`.
fn is_host_key(key: &str) -> bool {
    const WORDS: [&str; 20] = [
        "url", "urls", "uri", "href", "link", "links", "src", "endpoint", "host", "hostname", "domain", "ip", "ips",
        "addr", "server", "webhook", "callback", "origin", "proxy", "redirect",
    ];
    let mut word = String::new();
    let mut prev_lower = false;
    let mut hit = false;
    for c in key.chars().chain(std::iter::once('_')) {
        let boundary = !c.is_ascii_alphanumeric() || (c.is_ascii_uppercase() && prev_lower);
        if boundary && !word.is_empty() {
            hit |= WORDS.contains(&word.as_str());
            word.clear();
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    hit
}

/// Whether a whitespace-free string is a URL or an address however it is spelled: has `://`,
/// starts with `//` or `\\`, is `[v6]…`, starts with `localhost`, or its host part (before `:`,
/// `/`…) is an IPv4 spelling that is dotted-quad, hex, or followed by a port or a path. (A lone
/// `3.14` or `2852039166` is a number, not an address, unless its key names a host.)
fn looks_like_address(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    if lower.contains("://") || lower.starts_with("//") || lower.starts_with("\\\\") || lower.starts_with('[') {
        return true;
    }
    if lower.starts_with("localhost") {
        return true;
    }
    let head = lower.split([':', '/', '\\', '?', '#']).next().unwrap_or("");
    let shaped =
        head.matches('.').count() >= 3 || head.contains("0x") || (head.contains('.') && head.len() < lower.len());
    shaped && !matches!(ip::parse_ipv4(head), ip::V4::NotIpv4)
}

#[cfg(test)]
mod tests;
