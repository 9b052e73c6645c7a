//! `[upstreams.NAME]`: kind, base URL, credential, extra CA, scripted replies, circuit breaker.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{path, positive, resolve_path};
use crate::config::raw::RawUpstream;
use crate::config::validate::{Problems, Seg};
use crate::config::{circuit, tls, Credential, Reply, TokenSource, Upstream, UpstreamKind};

/// Every upstream that compiles, by name (one of an unknown kind is left out).
pub(super) fn compile(
    raw: BTreeMap<String, (usize, RawUpstream)>,
    circuit: &circuit::Global,
    base: &Path,
    problems: &mut Problems,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut upstreams = BTreeMap::new();
    for (name, (file, u)) in raw {
        if let Some(up) = upstream(name.clone(), file, u, circuit, base, problems) {
            upstreams.insert(name, Arc::new(up));
        }
    }
    upstreams
}

fn upstream(
    name: String,
    file: usize,
    u: RawUpstream,
    circuit: &circuit::Global,
    base: &Path,
    problems: &mut Problems,
) -> Option<Upstream> {
    let at = |k: &str| path(["upstreams".into(), name.clone().into(), k.into()]);
    let kind = kind(&u.kind, file, at("kind"), problems)?;
    let base_url = base_url(&name, u.base_url.as_deref(), kind, file, problems);
    let credential_source = match (&u.credential_env, &u.credential_file) {
        (Some(_), Some(_)) => {
            problems.add(file, at("credential_env"), "set credential_env or credential_file, not both", None);
            None
        }
        (Some(e), None) => Some(TokenSource::Env(e.clone())),
        (None, Some(f)) => Some(TokenSource::File(resolve_path(base, f))),
        (None, None) => None,
    };
    // A missing credential is not a policy error (`check` runs where the secret is absent); the
    // upstream refuses requests with a clear error until it is provided and rotated in.
    let credential = Credential::from_source(credential_source);
    let extra_ca = u.extra_ca.as_deref().map(|p| resolve_path(base, p));
    if let Some(ca) = &extra_ca {
        if let Err(e) = tls::read_ca(ca) {
            problems.add(file, at("extra_ca"), e, Some("name a PEM file with one or more CERTIFICATE blocks".into()));
        }
    }
    if kind != UpstreamKind::Scripted && !u.replies.is_empty() {
        problems.add(file, at("replies"), "only scripted upstreams have replies", None);
    }
    if kind == UpstreamKind::Scripted && u.replies.is_empty() {
        problems.add(
            file,
            path(["upstreams".into(), name.clone().into()]),
            format!("scripted upstream `{name}` has no replies"),
            Some("add [[upstreams.NAME.replies]] with text = \"…\"".into()),
        );
    }
    let chunk_chars = positive(u.chunk_chars, 8, file, at("chunk_chars"), problems) as usize;
    let chunk_delay = match u.chunk_delay_ms {
        None => Duration::from_millis(30),
        Some(n) if n >= 0 => Duration::from_millis(n as u64),
        Some(n) => {
            problems.add(file, at("chunk_delay_ms"), format!("must not be negative, not {n}"), None);
            Duration::ZERO
        }
    };
    let replies = u
        .replies
        .into_iter()
        .map(|r| Reply {
            when_contains: r.when_contains,
            text: r.text,
            tool_call: r.tool_call.map(|t| (t.name, t.arguments)),
        })
        .collect();
    // A scripted upstream never fails, so it has no breaker.
    let circuit = match kind {
        UpstreamKind::Scripted => None,
        _ => circuit::target(circuit, u.circuit.as_ref(), file, &at("circuit"), problems),
    };
    Some(Upstream { name, kind, base_url, credential, extra_ca, replies, chunk_chars, chunk_delay, circuit })
}

fn kind(kind: &str, file: usize, at: Vec<Seg>, problems: &mut Problems) -> Option<UpstreamKind> {
    match kind {
        "openai" => Some(UpstreamKind::OpenAi),
        "anthropic" => Some(UpstreamKind::Anthropic),
        "scripted" => Some(UpstreamKind::Scripted),
        other => {
            problems.add(
                file,
                at,
                format!("unknown upstream kind `{other}`"),
                Some("use \"openai\", \"anthropic\" or \"scripted\"".into()),
            );
            None
        }
    }
}

/// An HTTP(S) base URL for a provider upstream; none for a scripted one.
fn base_url(
    name: &str,
    url: Option<&str>,
    kind: UpstreamKind,
    file: usize,
    problems: &mut Problems,
) -> Option<http::Uri> {
    let at = |k: &str| path(["upstreams".into(), name.into(), k.into()]);
    match (url, kind) {
        (Some(url), UpstreamKind::OpenAi | UpstreamKind::Anthropic) => match url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some()
                    && uri.query().is_none() =>
            {
                Some(uri)
            }
            _ => {
                problems.add(
                    file,
                    at("base_url"),
                    format!("`{url}` is not an http(s) base URL"),
                    Some("e.g. https://api.openai.com (the API paths are appended)".into()),
                );
                None
            }
        },
        (None, UpstreamKind::OpenAi | UpstreamKind::Anthropic) => {
            problems.add(
                file,
                path(["upstreams".into(), name.into()]),
                format!("upstream `{name}` has no base_url"),
                Some("add base_url = \"https://…\"".into()),
            );
            None
        }
        (Some(_), UpstreamKind::Scripted) => {
            problems.add(
                file,
                at("base_url"),
                "a scripted upstream has no base_url",
                Some("remove it, or use kind = \"openai\"/\"anthropic\"".into()),
            );
            None
        }
        (None, UpstreamKind::Scripted) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{located, raw};
    use super::*;

    type Upstreams = BTreeMap<String, Arc<Upstream>>;

    fn upstreams(text: &str) -> (Upstreams, Vec<(usize, String)>) {
        let r = raw(text);
        let mut p = Problems::default();
        let global = circuit::global(r.circuit.as_ref(), &mut p);
        let m = r.upstreams.into_iter().map(|(n, u)| (n, (0, u))).collect();
        let out = compile(m, &global, Path::new("."), &mut p);
        (out, located(p, text).into_iter().map(|l| (l.line, l.message)).collect())
    }

    #[test]
    fn provider_and_scripted_upstreams_compile() {
        let (u, found) = upstreams(
            "[upstreams.oa]\nkind = \"openai\"\nbase_url = \"https://api.openai.com\"\ncredential_env = \"K\"\n\n\
             [upstreams.s]\nkind = \"scripted\"\nchunk_chars = 3\n[[upstreams.s.replies]]\ntext = \"hi\"\n",
        );
        assert!(found.is_empty(), "{found:?}");
        let oa = &u["oa"];
        assert_eq!(oa.kind, UpstreamKind::OpenAi);
        assert_eq!(oa.base_url.as_ref().and_then(|b| b.host()), Some("api.openai.com"));
        assert_eq!(oa.chunk_delay, Duration::from_millis(30));
        let s = &u["s"];
        assert_eq!((s.kind, s.chunk_chars, s.replies.len()), (UpstreamKind::Scripted, 3, 1));
        assert!(s.base_url.is_none() && s.circuit.is_none());
    }

    #[test]
    fn bad_upstreams_are_reported_at_their_keys() {
        let text = "[upstreams.a]\nkind = \"telepathy\"\n\n\
                    [upstreams.b]\nkind = \"openai\"\nbase_url = \"ftp://x\"\nchunk_delay_ms = -1\n\n\
                    [upstreams.c]\nkind = \"anthropic\"\n\n\
                    [upstreams.d]\nkind = \"scripted\"\nbase_url = \"http://x\"\n\n\
                    [upstreams.e]\nkind = \"openai\"\nbase_url = \"http://x\"\ncredential_env = \"A\"\ncredential_file = \"f\"\n\
                    extra_ca = \"no-such-ca.pem\"\n[[upstreams.e.replies]]\ntext = \"x\"\n";
        let (u, found) = upstreams(text);
        assert!(!u.contains_key("a"), "an upstream of an unknown kind is left out");
        let want = [
            (2, "unknown upstream kind `telepathy`"),
            (6, "`ftp://x` is not an http(s) base URL"),
            (7, "must not be negative, not -1"),
            (9, "upstream `c` has no base_url"),
            (14, "a scripted upstream has no base_url"),
            (12, "scripted upstream `d` has no replies"),
        ];
        for (line, msg) in want {
            assert!(found.iter().any(|(l, m)| *l == line && m == msg), "{line}: {msg}: {found:?}");
        }
        for msg in ["set credential_env or credential_file, not both", "only scripted upstreams have replies"] {
            assert!(found.iter().any(|(_, m)| m == msg), "{msg}: {found:?}");
        }
        assert!(
            found.iter().any(|(_, m)| m.starts_with("cannot read CA file ") && m.contains("no-such-ca.pem")),
            "{found:?}"
        );
        assert_eq!(found.len(), 9, "{found:?}");
    }
}
