//! Markdown neutralisation cases: images, links, long queries, references, HTML, code.

use super::super::{EgressConfig, EgressMode, EgressRules};
use super::*;

fn rules() -> EgressRules {
    let cfg = EgressConfig {
        mode: EgressMode::Allowlist,
        allow_domains: vec!["docs.example.com".into(), "*.trusted.org".into()],
        max_query_len: 16,
        ..EgressConfig::default()
    };
    EgressRules::compile(&cfg).unwrap_or_else(|e| panic!("{e:?}"))
}

fn n(text: &str) -> Option<String> {
    rules().neutralize_markdown(text, &|_| false).map(|(s, _)| s)
}

fn kinds(text: &str) -> Vec<(LinkKind, &'static str)> {
    rules()
        .neutralize_markdown(text, &|_| false)
        .map(|(_, f)| f.into_iter().map(|x| (x.kind, x.reason.rule_id().as_str())).collect())
        .unwrap_or_default()
}

#[test]
fn clean_and_allowed_text_is_untouched() {
    for t in [
        "",
        "no links at all, just prose. 3 < 4 and a[1] = b;",
        "[docs](https://docs.example.com/guide) and ![logo](https://cdn.trusted.org/logo.png)",
        "[rel](/local/page?q=1) [frag](#top) [page](page.html)",
        "see https://docs.example.com/a and www.cdn.trusted.org",
        "<https://docs.example.com/x> and <a href=\"https://docs.example.com\">docs</a>",
        "[ref]: https://docs.example.com/ref \"Title\"",
        "mail me at <me@example.net>",
    ] {
        assert_eq!(n(t), None, "{t}");
    }
}

#[test]
fn images_go() {
    assert_eq!(n("a ![x](https://evil.com/p.png) b").as_deref(), Some("a [image removed by policy] b"));
    assert_eq!(n("![x](<https://evil.com/a b.png> \"t\")").as_deref(), Some("[image removed by policy]"));
    assert_eq!(n("![x](//evil.com/p.png)").as_deref(), Some("[image removed by policy]"));
    assert_eq!(n("![x](http://169.254.169.254/latest)").as_deref(), Some("[image removed by policy]"));
    assert_eq!(kinds("![](https://evil.com/)"), [(LinkKind::Image, "egress.not_allowlisted")]);
}

#[test]
fn links_keep_their_text() {
    assert_eq!(
        n("see [the docs](https://evil.com/x) now").as_deref(),
        Some("see the docs [link removed by policy] now")
    );
    assert_eq!(n("[a [nested] text](https://evil.com)").as_deref(), Some("a [nested] text [link removed by policy]"));
    assert_eq!(n("[x](javascript:alert(1))").as_deref(), Some("x [link removed by policy]"));
    assert_eq!(kinds("[x](javascript:alert(1))"), [(LinkKind::Link, "egress.scheme")]);
    // A linked image: both parts are checked.
    assert_eq!(
        n("[![i](https://evil.com/i.png)](https://docs.example.com/)").as_deref(),
        Some("[[image removed by policy]](https://docs.example.com/)")
    );
    assert_eq!(
        n("[![i](https://evil.com/i.png)](https://evil.com/)").as_deref(),
        Some("[image removed by policy] [link removed by policy]")
    );
    // Link text that is itself a bare URL is not left to a linkifier.
    assert_eq!(
        n("[https://evil.com/?q=x](https://evil.com/?q=x)").as_deref(),
        Some("[link removed by policy] [link removed by policy]")
    );
}

#[test]
fn long_query_strings_go_even_to_allowed_hosts() {
    let t = "![x](https://docs.example.com/p.png?d=c2VjcmV0LXRva2VuLXZhbHVl)";
    assert_eq!(n(t).as_deref(), Some("[image removed by policy]"));
    assert_eq!(kinds(t), [(LinkKind::Image, "egress.long_query")]);
    assert_eq!(n("![x](https://docs.example.com/p.png?v=2)"), None);
    // The fragment is not the query.
    assert_eq!(n("[x](https://docs.example.com/p#aaaaaaaaaaaaaaaaaaaaaaaaaaaa)"), None);
}

#[test]
fn obfuscated_destinations_are_decoded() {
    assert_eq!(n("![x](https&colon;//evil.com/a.png)").as_deref(), Some("[image removed by policy]"));
    assert_eq!(n("![x](https://evil&#46;com/a.png)").as_deref(), Some("[image removed by policy]"));
    assert_eq!(n("[x](java&Tab;script:alert(1))").as_deref(), Some("x [link removed by policy]"));
    assert_eq!(n("[x](/\\evil.com/)").as_deref(), Some("x [link removed by policy]"));
    assert_eq!(n("[x](https://docs.example.com&bogus;/)").as_deref(), Some("x [link removed by policy]"));
}

#[test]
fn references_autolinks_html_and_bare_urls() {
    assert_eq!(
        n("Click [here][1].\n\n[1]: https://evil.com/?q=abc \"t\"\nmore").as_deref(),
        Some("Click [here][1].\n\n[link removed by policy]\nmore")
    );
    assert_eq!(n("> - [img]: <https://evil.com/x.png>").as_deref(), Some("> - [link removed by policy]"));
    assert_eq!(n("go <https://evil.com/x> now").as_deref(), Some("go [link removed by policy] now"));
    assert_eq!(n("<img src=\"https://evil.com/p.png?q=1\" alt=x> hi").as_deref(), Some("[image removed by policy] hi"));
    assert_eq!(n("<IMG/SRC=//evil.com/p.png>").as_deref(), Some("[image removed by policy]"));
    assert_eq!(n("<a href='https://evil.com'>x</a>").as_deref(), Some("[link removed by policy]x</a>"));
    assert_eq!(
        n("<img srcset=\"https://docs.example.com/a.png 1x, https://evil.com/b.png 2x\">").as_deref(),
        Some("[image removed by policy]")
    );
    assert_eq!(
        n("<div style=\"background:url('https://evil.com/t.png')\">x</div>").as_deref(),
        Some("[image removed by policy]x</div>")
    );
    assert_eq!(
        n("visit https://evil.com/x, or www.evil.com.").as_deref(),
        Some("visit [link removed by policy], or [link removed by policy].")
    );
    assert_eq!(kinds("<https://evil.com>"), [(LinkKind::Autolink, "egress.not_allowlisted")]);
}

#[test]
fn code_is_left_alone() {
    assert_eq!(n("use `![x](https://evil.com/p.png)` in markdown"), None);
    assert_eq!(n("``a ` ![x](https://evil.com/) ``"), None);
    assert_eq!(n("```md\n![x](https://evil.com/p.png)\n<img src=https://evil.com>\n```\nok"), None);
    // An unclosed code span is not code.
    assert_eq!(n("` ![x](https://evil.com/p.png)").as_deref(), Some("` [image removed by policy]"));
    // A fence inside an HTML block is raw HTML, not code.
    assert!(n("<div>\n```\n<img src=\"https://evil.com/x.png\">\n```\n</div>").is_some());
    // An indented fence may close with its list item: checked.
    assert!(n("- a\n  ```\n- ![x](https://evil.com/p.png)\n  ```").is_some());
}

#[test]
fn unmatched_brackets_still_check_the_destination() {
    let long = format!("[{}](https://evil.com/?q=1)", "a".repeat(MAX_LABEL + 10));
    let out = n(&long).unwrap_or_default();
    assert!(out.ends_with("]([link removed by policy])"), "{}", &out[out.len() - 40..]);
    assert!(!out.contains("evil.com"));
}

#[test]
fn spans_and_order_of_findings() {
    let t = "x ![a](https://evil.com/1) [b](https://evil.com/2)";
    let (_, f) = rules().neutralize_markdown(t, &|_| false).unwrap_or_default();
    assert_eq!(f.len(), 2);
    assert_eq!(&t[f[0].span.clone()], "![a](https://evil.com/1)");
    assert_eq!(&t[f[1].span.clone()], "[b](https://evil.com/2)");
}

#[test]
fn switch_blocks_apply() {
    let t = "![x](https://docs.example.com/a.png)";
    let r = rules().neutralize_markdown(t, &|h| h == "example.com").map(|(_, f)| f[0].reason);
    assert_eq!(r, Some(DenyReason::SwitchBlocked));
}

#[test]
fn pathological_input_is_fast() {
    let t = "[".repeat(50_000) + &"`".repeat(3) + &"<a ".repeat(20_000);
    // A hang detector, not a speed target (benches measure speed): an exponential or badly quadratic
    // scan of this input runs for minutes. The bound is generous because CI machines have 2 loaded
    // cores and this is a debug build.
    let start = std::time::Instant::now();
    let _ = n(&t);
    assert!(start.elapsed().as_secs() < 60);
}
