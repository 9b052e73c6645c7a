//! `[[routes]]`, and the implicit route of an API that has none.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::merge::Origin;
use super::{names, path};
use crate::config::prompts::{self, ManagedPrompt};
use crate::config::raw::RawRoute;
use crate::config::validate::Problems;
use crate::config::{circuit, GlobSet, Route, Upstream, UpstreamKind};
use crate::protocol::Api;

/// The declared routes in order (one of an unknown API left out), then the implicit ones.
pub(super) fn compile(
    raw: Vec<(Origin, RawRoute)>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    managed_prompts: &BTreeMap<String, ManagedPrompt>,
    problems: &mut Problems,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for (o, r) in raw {
        if let Some(route) = route(&o, r, upstreams, managed_prompts, problems) {
            routes.push(route);
        }
    }
    implicit(&mut routes, upstreams);
    routes
}

fn route(
    o: &Origin,
    r: RawRoute,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    managed_prompts: &BTreeMap<String, ManagedPrompt>,
    problems: &mut Problems,
) -> Option<Route> {
    let at = |k: &str| path(["routes".into(), o.index.into(), k.into()]);
    let api = match r.api.as_str() {
        "openai" => Api::OpenAi,
        "anthropic" => Api::Anthropic,
        other => {
            problems.add(
                o.file,
                at("api"),
                format!("unknown api `{other}`"),
                Some("use \"openai\" or \"anthropic\"".into()),
            );
            return None;
        }
    };
    match upstreams.get(&r.upstream) {
        None => problems.add(
            o.file,
            at("upstream"),
            format!("unknown upstream `{}`", r.upstream),
            Some(format!("upstreams declared: {}", names(upstreams.keys()))),
        ),
        Some(u) if !speaks(api, u.kind) && u.kind != UpstreamKind::Scripted => problems.add(
            o.file,
            at("upstream"),
            format!("upstream `{}` does not speak the {} API", r.upstream, r.api),
            Some("route each API to an upstream of its kind".into()),
        ),
        Some(_) => {}
    }
    let prompt = prompts::check_binding(managed_prompts, r.prompt.as_deref(), o.file, at("prompt"), problems);
    if let Some(fb) = &r.fallback {
        circuit::check_fallback(api, &r.upstream, fb, upstreams, o.file, &at("fallback"), problems);
    }
    Some(Route {
        api,
        any_model: r.models.is_empty(),
        models: GlobSet::new(r.models.iter().map(String::as_str)),
        upstream: r.upstream,
        prompt,
        fallback: r.fallback,
    })
}

/// Whether a provider upstream of `kind` speaks `api`.
fn speaks(api: Api, kind: UpstreamKind) -> bool {
    matches!((api, kind), (Api::OpenAi, UpstreamKind::OpenAi) | (Api::Anthropic, UpstreamKind::Anthropic))
}

/// Implicit routes: an API with no route goes to its only upstream of that kind (or, with none, to
/// a scripted upstream).
fn implicit(routes: &mut Vec<Route>, upstreams: &BTreeMap<String, Arc<Upstream>>) {
    for api in [Api::OpenAi, Api::Anthropic] {
        if routes.iter().any(|r| r.api == api) {
            continue;
        }
        let fitting: Vec<&Arc<Upstream>> = upstreams.values().filter(|u| speaks(api, u.kind)).collect();
        let only = match fitting.as_slice() {
            [one] => Some(*one),
            [] => upstreams.values().find(|u| u.kind == UpstreamKind::Scripted),
            _ => None,
        };
        if let Some(u) = only {
            routes.push(Route {
                api,
                any_model: true,
                models: GlobSet::default(),
                upstream: u.name.clone(),
                prompt: None,
                fallback: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::{located, raw};
    use super::*;

    fn routes(text: &str) -> (Vec<Route>, Vec<(usize, String)>) {
        let r = raw(text);
        let mut p = Problems::default();
        let global = circuit::global(None, &mut p);
        let up = super::super::upstreams::compile(
            r.upstreams.into_iter().map(|(n, u)| (n, (0, u))).collect(),
            &global,
            Path::new("."),
            &mut p,
        );
        let rs = r.routes.into_iter().enumerate().map(|(index, r)| (Origin { file: 0, index }, r)).collect();
        let out = compile(rs, &up, &BTreeMap::new(), &mut p);
        (out, located(p, text).into_iter().map(|l| (l.line, l.message)).collect())
    }

    const UPSTREAMS: &str = "[upstreams.oa]\nkind = \"openai\"\nbase_url = \"http://x\"\n\
                             [upstreams.an]\nkind = \"anthropic\"\nbase_url = \"http://y\"\n";

    #[test]
    fn declared_routes_first_then_one_implicit_route_per_api() {
        let text = format!("{UPSTREAMS}[[routes]]\napi = \"openai\"\nupstream = \"oa\"\nmodels = [\"gpt-*\"]\n");
        let (rs, found) = routes(&text);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(rs.len(), 2);
        assert!(rs[0].api == Api::OpenAi && !rs[0].any_model && rs[0].models.matches("gpt-4o"));
        assert!(rs[1].api == Api::Anthropic && rs[1].any_model && rs[1].upstream == "an");
    }

    #[test]
    fn no_implicit_route_when_two_upstreams_fit() {
        let text = format!("{UPSTREAMS}[upstreams.oa2]\nkind = \"openai\"\nbase_url = \"http://z\"\n");
        let (rs, _) = routes(&text);
        assert_eq!(rs.iter().map(|r| r.upstream.as_str()).collect::<Vec<_>>(), ["an"]);
        let (rs, _) = routes("[upstreams.s]\nkind = \"scripted\"\n[[upstreams.s.replies]]\ntext = \"x\"\n");
        assert_eq!(rs.len(), 2, "a scripted upstream serves both APIs");
    }

    #[test]
    fn bad_routes_are_reported_at_their_keys() {
        let text = format!(
            "{UPSTREAMS}[[routes]]\napi = \"grpc\"\nupstream = \"oa\"\n\
             [[routes]]\napi = \"openai\"\nupstream = \"nowhere\"\n\
             [[routes]]\napi = \"anthropic\"\nupstream = \"oa\"\n"
        );
        let (rs, found) = routes(&text);
        assert_eq!(rs.len(), 2, "the route of an unknown api is left out");
        assert_eq!(
            found,
            [
                (8, "unknown api `grpc`".to_owned()),
                (12, "unknown upstream `nowhere`".to_owned()),
                (15, "upstream `oa` does not speak the anthropic API".to_owned()),
            ]
        );
    }
}
