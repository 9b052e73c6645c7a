//! The egress table: URL spellings and their verdicts, and the config checks.

use super::*;
use DenyReason as R;

const ALLOW: Option<DenyReason> = None;

fn compile(cfg: EgressConfig) -> EgressRules {
    EgressRules::compile(&cfg).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Allowlist mode with wildcards, a denied subdomain, CIDRs and two schemes.
fn allowlist() -> EgressRules {
    compile(EgressConfig {
        mode: EgressMode::Allowlist,
        allow_domains: vec!["allowed.com".into(), "*.trusted.org".into(), "API.Partner.io.".into()],
        deny_domains: vec!["evil.trusted.org".into(), "*.evil.trusted.org".into()],
        allow_cidrs: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
        deny_cidrs: vec!["203.0.113.66".into()],
        allowed_schemes: vec!["https".into(), "HTTP".into()],
        ..EgressConfig::default()
    })
}

fn no_switch(_: &str) -> bool {
    false
}

fn verdict(r: &EgressRules, url: &str) -> Option<DenyReason> {
    match r.check_url(url, &no_switch) {
        Verdict::Allow => None,
        Verdict::Deny(reason) => Some(reason),
    }
}

/// Compares rule ids so that `Unparseable`'s detail does not matter.
fn assert_table(r: &EgressRules, table: &[(&str, Option<DenyReason>)]) {
    let mut failures = Vec::new();
    for (url, want) in table {
        let got = verdict(r, url);
        if got.map(DenyReason::rule_id) != want.map(DenyReason::rule_id) {
            failures.push(format!("{url:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows wrong:\n{}", failures.len(), table.len(), failures.join("\n"));
}

const UNPARSEABLE: Option<DenyReason> = Some(R::Unparseable(""));

#[test]
fn url_table_allowlist() {
    let table: &[(&str, Option<DenyReason>)] = &[
        // Allowed domains, exact and wildcard, in any case, with ports, trailing dots, no scheme.
        ("https://allowed.com/x?y=1", ALLOW),
        ("HTTPS://ALLOWED.COM./x", ALLOW),
        ("https://allowed.com:8443/x", ALLOW),
        ("http://user:pw@allowed.com/", ALLOW),
        ("https://api.partner.io/v1", ALLOW),
        ("https://a.trusted.org/", ALLOW),
        ("https://a.b.trusted.org/", ALLOW),
        ("//allowed.com/x", ALLOW),
        ("allowed.com/x", ALLOW),
        ("allowed.com:443/x", ALLOW),
        ("https://allowed.com\\x", ALLOW),
        // Not in the allowlist.
        ("https://sub.allowed.com/", Some(R::NotAllowlisted)),
        ("https://trusted.org/", Some(R::NotAllowlisted)),
        ("https://allowed.com.evil.com/", Some(R::NotAllowlisted)),
        ("https://evilallowed.com/", Some(R::NotAllowlisted)),
        ("http://evil.com#@allowed.com", Some(R::NotAllowlisted)),
        ("http://allowed.com@evil.com/", Some(R::NotAllowlisted)),
        ("http://8.8.8.8/", Some(R::NotAllowlisted)),
        ("http://172.32.0.1/", Some(R::NotAllowlisted)),
        ("http://[2606:4700::1111]/", Some(R::NotAllowlisted)),
        // Denied subdomains win over the wildcard.
        ("https://evil.trusted.org/x", Some(R::DeniedDomain)),
        ("https://x.evil.trusted.org/", Some(R::DeniedDomain)),
        // CIDRs.
        ("http://203.0.113.5/", ALLOW),
        ("http://203.0.113.66/", Some(R::DeniedCidr)),
        ("http://[2001:db8::1]:8080/", ALLOW),
        ("http://[::ffff:203.0.113.66]/", Some(R::DeniedCidr)),
        // Schemes.
        ("ftp://allowed.com/", Some(R::Scheme)),
        ("ws://allowed.com/", Some(R::Scheme)),
        ("javascript:alert(1)", Some(R::Scheme)),
        ("JaVaScRiPt:alert(1)", Some(R::Scheme)),
        ("java\tscript:alert(1)", Some(R::Scheme)),
        ("data:text/html,<script>x</script>", Some(R::Scheme)),
        ("file:///etc/passwd", Some(R::Scheme)),
        ("gopher://allowed.com:70/_x", Some(R::Scheme)),
        ("mailto:a@allowed.com", Some(R::Scheme)),
        // Metadata, in every spelling.
        ("http://169.254.169.254/latest/meta-data/", Some(R::Metadata)),
        ("http://2852039166/", Some(R::Metadata)),
        ("http://0xA9FEA9FE/", Some(R::Metadata)),
        ("http://0xa9.0xfe.0xa9.0xfe/", Some(R::Metadata)),
        ("http://0251.0376.0251.0376/", Some(R::Metadata)),
        ("http://169.254.43518/", Some(R::Metadata)),
        ("http://169.254.169.254./", Some(R::Metadata)),
        ("http://[::ffff:169.254.169.254]/", Some(R::Metadata)),
        ("http://[::ffff:a9fe:a9fe]/", Some(R::Metadata)),
        ("http://[0:0:0:0:0:FFFF:A9FE:A9FE]/", Some(R::Metadata)),
        ("http://[64:ff9b::169.254.169.254]/", Some(R::Metadata)),
        ("http://[fd00:ec2::254]/latest", Some(R::Metadata)),
        ("http://metadata.google.internal/computeMetadata/v1/", Some(R::Metadata)),
        ("http://METADATA.GOOGLE.INTERNAL./", Some(R::Metadata)),
        ("http://100.100.100.200/latest/meta-data/", Some(R::Metadata)),
        ("http://168.63.129.16/machine", Some(R::Metadata)),
        ("http://169.254.170.2/v2/credentials", Some(R::Metadata)),
        ("http://allowed.com@169.254.169.254/", Some(R::Metadata)),
        ("http://169.254.169.254#@allowed.com", Some(R::Metadata)),
        ("http://169.254.169.254\\@allowed.com/", Some(R::Metadata)),
        ("http://allowed.com\\@169.254.169.254/", Some(R::Metadata)),
        ("http:\\\\169.254.169.254\\latest", Some(R::Metadata)),
        ("http:/\\/169.254.169.254/", Some(R::Metadata)),
        ("http://%31%36%39.254.169.254/", Some(R::Metadata)),
        ("http://169%2e254%2e169%2e254/", Some(R::Metadata)),
        ("  http://169.254.169.254/  ", Some(R::Metadata)),
        ("http://169.254.16\n9.254/", Some(R::Metadata)),
        ("//169.254.169.254/", Some(R::Metadata)),
        ("169.254.169.254:80/latest", Some(R::Metadata)),
        // Loopback.
        ("http://127.0.0.1/", Some(R::Loopback)),
        ("http://127.1/", Some(R::Loopback)),
        ("http://127.000.000.001/", Some(R::Loopback)),
        ("http://0177.0.0.1/", Some(R::Loopback)),
        ("http://0x7f.1/", Some(R::Loopback)),
        ("http://2130706433/", Some(R::Loopback)),
        ("http://%31%32%37.0.0.1/", Some(R::Loopback)),
        ("http://localhost/", Some(R::Loopback)),
        ("http://LOCALHOST./", Some(R::Loopback)),
        ("http://foo.localhost/", Some(R::Loopback)),
        ("localhost:8080/admin", Some(R::Loopback)),
        ("http://[::1]:8080/", Some(R::Loopback)),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", Some(R::Loopback)),
        ("http://[::127.0.0.1]/", Some(R::Loopback)),
        ("http://[::1%25lo]/", Some(R::Loopback)),
        // Unspecified.
        ("http://0.0.0.0:8080/", Some(R::Unspecified)),
        ("http://0/", Some(R::Unspecified)),
        ("http://[::]/", Some(R::Unspecified)),
        // Private and link-local.
        ("http://10.0.0.1/", Some(R::PrivateAddress)),
        ("http://10.1/", Some(R::PrivateAddress)),
        ("http://012.1/", Some(R::PrivateAddress)),
        ("http://172.16.5.4/", Some(R::PrivateAddress)),
        ("http://192.168.1.1/", Some(R::PrivateAddress)),
        ("http://3232235777/", Some(R::PrivateAddress)),
        ("http://100.64.0.1/", Some(R::PrivateAddress)),
        ("http://[fc00::1]/", Some(R::PrivateAddress)),
        ("http://[FD12:3456::1]/", Some(R::PrivateAddress)),
        ("http://[::ffff:10.0.0.1]/", Some(R::PrivateAddress)),
        ("http://169.254.10.10/", Some(R::LinkLocal)),
        ("http://[fe80::1]/", Some(R::LinkLocal)),
        ("http://[fe80::a9fe:a9fe%25eth0]/", Some(R::LinkLocal)),
        ("http://224.0.0.1/", Some(R::Reserved)),
        ("http://255.255.255.255/", Some(R::Reserved)),
        // Internal names.
        ("http://intranet/", Some(R::InternalName)),
        ("http://db.internal:5432/", Some(R::InternalName)),
        ("http://printer.local/", Some(R::InternalName)),
        ("http://svc.ns.svc.cluster.local/", Some(R::InternalName)),
        ("http://127.0.0.1.nip.io/", Some(R::InternalName)),
        ("http://lvh.me/", Some(R::InternalName)),
        // Unparseable: fail closed.
        ("http://1.2.3.4.5/", UNPARSEABLE),
        ("http://256.0.0.1/", UNPARSEABLE),
        ("http://08.1/", UNPARSEABLE),
        ("http://a@b@c/", UNPARSEABLE),
        ("http://exa mple.com/", UNPARSEABLE),
        ("http://[::1/", UNPARSEABLE),
        ("http://[::1]x/", UNPARSEABLE),
        ("http://allowed.com:99999/", UNPARSEABLE),
        ("http://allowed.com:80a/", UNPARSEABLE),
        ("http://１２７.０.０.１/", UNPARSEABLE),
        ("http://allowed。com/", UNPARSEABLE),
        ("http://allowed.com%00.evil.com/", UNPARSEABLE),
        ("http://%zz/", UNPARSEABLE),
        ("http://[2001:db8::1%25eth0]/", UNPARSEABLE),
        ("http://a..b/", UNPARSEABLE),
        ("http:///", UNPARSEABLE),
        ("", UNPARSEABLE),
        ("http://allowed.com\\.evil.com@169.254.169.254/", Some(R::Metadata)),
    ];
    assert!(table.len() >= 40);
    assert_table(&allowlist(), table);
}

#[test]
fn url_table_denylist_and_allow_private() {
    let deny = compile(EgressConfig {
        mode: EgressMode::Denylist,
        deny_domains: vec!["evil.com".into(), "*.evil.com".into()],
        deny_cidrs: vec!["198.51.100.0/24".into()],
        ..EgressConfig::default()
    });
    assert_table(
        &deny,
        &[
            ("https://anything.net/x", ALLOW),
            ("https://8.8.8.8/", ALLOW),
            ("http://anything.net/", Some(R::Scheme)),
            ("https://evil.com/", Some(R::DeniedDomain)),
            ("https://a.b.evil.com/", Some(R::DeniedDomain)),
            ("https://notevil.com/", ALLOW),
            ("https://198.51.100.7/", Some(R::DeniedCidr)),
            ("https://3325256711/", Some(R::DeniedCidr)),
            ("https://169.254.169.254/", Some(R::Metadata)),
            ("https://10.0.0.1/", Some(R::PrivateAddress)),
            ("https://[::ffff:10.0.0.1]/", Some(R::PrivateAddress)),
            ("https://localhost/", Some(R::Loopback)),
        ],
    );
    let private = compile(EgressConfig { mode: EgressMode::Denylist, allow_private: true, ..EgressConfig::default() });
    assert_table(
        &private,
        &[
            ("https://10.0.0.1/", ALLOW),
            ("https://localhost:8443/", ALLOW),
            ("https://[fe80::1%25eth0]/", ALLOW),
            ("https://intranet/", ALLOW),
            ("https://169.254.169.254/", Some(R::Metadata)),
            ("https://[fd00:ec2::254]/", Some(R::Metadata)),
            ("https://metadata.google.internal/", Some(R::Metadata)),
        ],
    );
}

#[test]
fn hosts_and_addresses() {
    let r = allowlist();
    let h = |s: &str| match r.check_host(s, &no_switch) {
        Verdict::Allow => None,
        Verdict::Deny(x) => Some(x.rule_id().as_str()),
    };
    assert_eq!(h("allowed.com"), None);
    assert_eq!(h("Allowed.com:443"), None);
    assert_eq!(h("169.254.169.254"), Some("egress.metadata"));
    assert_eq!(h("0xA9FEA9FE"), Some("egress.metadata"));
    assert_eq!(h("fe80::1%eth0"), Some("egress.link_local"));
    assert_eq!(h("::1"), Some("egress.loopback"));
    assert_eq!(h("[::1]:80"), Some("egress.loopback"));
    assert_eq!(h("allowed.com/x"), Some("egress.unparseable"));
    assert_eq!(h("evil.com"), Some("egress.not_allowlisted"));
    let ip = "10.0.0.1".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    assert_eq!(r.check_ip(ip, &no_switch), Verdict::Deny(R::PrivateAddress));
}

#[test]
fn switches_see_the_normalised_host_and_its_parents() {
    let r = allowlist();
    let seen = std::cell::RefCell::new(Vec::new());
    let blocked = |h: &str| {
        seen.borrow_mut().push(h.to_owned());
        h == "trusted.org" || h == "203.0.113.9"
    };
    assert_eq!(r.check_url("https://A.Trusted.Org./x", &blocked), Verdict::Deny(R::SwitchBlocked));
    assert!(seen.borrow().contains(&"a.trusted.org".to_owned()));
    assert_eq!(r.check_url("http://[::ffff:203.0.113.9]/", &blocked), Verdict::Deny(R::SwitchBlocked));
    assert_eq!(r.check_url("http://0xcb007109/", &blocked), Verdict::Deny(R::SwitchBlocked));
    assert_eq!(r.check_url("https://allowed.com/", &blocked), Verdict::Allow);
}

#[test]
fn config_defaults_and_unknown_keys() {
    let cfg: EgressConfig = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg, EgressConfig::default());
    assert_eq!(cfg.allowed_schemes, ["https"]);
    assert_eq!(cfg.mode, EgressMode::Allowlist);
    let cfg: EgressConfig = toml::from_str("mode = \"denylist\"\nmax_query_len = 10").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((cfg.mode, cfg.max_query_len), (EgressMode::Denylist, 10));
    assert!(toml::from_str::<EgressConfig>("allow_domain = [\"x.com\"]").is_err());
    assert!(toml::from_str::<EgressConfig>("mode = \"open\"").is_err());
}

#[test]
fn compile_reports_every_problem_with_a_hint() {
    let cfg = EgressConfig {
        allow_domains: vec!["*".into(), "foo*.com".into(), "1.2.3.4".into(), "localhost".into(), "ok.com".into()],
        deny_domains: vec!["bad domain.com".into()],
        allow_cidrs: vec!["10.0.0.0/8".into(), "169.254.169.254/32".into()],
        deny_cidrs: vec!["10.0.0.1/8".into(), "nope".into(), "10.0.0.0/40".into()],
        allowed_schemes: vec!["https".into(), "javascript".into(), "gopherx".into()],
        ..EgressConfig::default()
    };
    let errors = match EgressRules::compile(&cfg) {
        Ok(_) => panic!("should not compile"),
        Err(e) => e,
    };
    let all = errors.join("\n");
    assert_eq!(errors.len(), 12, "{all}");
    for needle in [
        "egress.allow_domains[0]: `*` matches everything; use mode = \"denylist\"",
        "egress.allow_domains[1]",
        "allow_cidrs / deny_cidrs",
        "egress.allow_domains[3]: `localhost` is denied by default",
        "set allow_private = true",
        "egress.deny_domains[0]",
        "always denied",
        "did you mean `10.0.0.0/8`?",
        "egress.deny_cidrs[1]",
        "from 0 to 32",
        "can never be allowed",
        "unknown scheme `gopherx`; known: http, https",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn tool_call_arguments() {
    let r = compile(EgressConfig { mode: EgressMode::Denylist, ..EgressConfig::default() });
    let args = serde_json::json!({
        "url": "https://2852039166/latest",
        "query": "summarise https://10.0.0.1/admin please",
        "nested": {"targetHostName": "localhost", "list": ["https://ok.example/", "//127.1/"]},
        "ip": 2852039166u64,
        "note": "3.14",
        "time": "12:30",
        "path": "report.pdf",
        "version": "1.2.3",
        "a/b": "[::1]:8080",
    });
    let mut found = r.check_json(&args, &no_switch);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(&str, &str)> = found.iter().map(|(p, reason)| (p.as_str(), reason.rule_id().as_str())).collect();
    assert_eq!(
        got,
        [
            ("/a~1b", "egress.loopback"),
            ("/ip", "egress.metadata"),
            ("/nested/list/1", "egress.loopback"),
            ("/nested/targetHostName", "egress.loopback"),
            ("/query", "egress.private_address"),
            ("/url", "egress.metadata"),
        ]
    );
}

#[test]
fn host_keys() {
    for k in ["url", "imageUrl", "base_url", "targetHostName", "ip_address", "webhook-endpoint", "SERVER"] {
        assert!(is_host_key(k), "{k}");
    }
    for k in ["description", "recipient", "zip", "script", "query", "path", "hostile_text"] {
        assert!(!is_host_key(k), "{k}");
    }
}
