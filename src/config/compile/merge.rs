//! The main policy file and its includes merged into one [`Merged`] policy: the mergeable sections
//! (upstreams, roles, tools, tenants, keys, routes) from every file, the rest from the main file.

use std::collections::BTreeMap;
use std::path::Path;

use super::parse::parse;
use crate::config::raw::{RawKey, RawPolicy, RawRole, RawRoute, RawTenant, RawTool, RawUpstream};
use crate::config::validate::{PolicyFile, Problems};

/// Where a merged item came from: file index and its index (or key) in that file.
pub(super) struct Origin {
    pub(super) file: usize,
    pub(super) index: usize,
}

/// Every file's sections, each item with the file it came from.
pub(super) struct Merged {
    pub(super) main: RawPolicy,
    pub(super) upstreams: BTreeMap<String, (usize, RawUpstream)>,
    pub(super) roles: BTreeMap<String, (usize, RawRole)>,
    pub(super) tools: BTreeMap<String, (usize, RawTool)>,
    pub(super) tenants: BTreeMap<String, (usize, RawTenant)>,
    pub(super) keys: Vec<(Origin, RawKey)>,
    pub(super) routes: Vec<(Origin, RawRoute)>,
}

/// Parses the main file (`sources[0]`) and every file it includes (appended to `sources`), and
/// merges them; `None` when the main file does not parse.
pub(super) fn merge(sources: &mut Vec<PolicyFile>, base: &Path, problems: &mut Problems) -> Option<Merged> {
    let main = parse(0, &sources[0].text, problems)?;
    let mut merged = Merged {
        upstreams: BTreeMap::new(),
        roles: BTreeMap::new(),
        tools: BTreeMap::new(),
        tenants: BTreeMap::new(),
        keys: Vec::new(),
        routes: Vec::new(),
        main: RawPolicy::default(),
    };
    let includes = main.include.clone();
    absorb(&mut merged, 0, main, problems);
    merged.main.include = includes.clone();
    for (i, inc) in includes.iter().enumerate() {
        let path = base.join(inc);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file = sources.len();
                sources.push(PolicyFile { path: path.clone(), text });
                if let Some(raw) = parse(file, &sources[file].text, problems) {
                    if !raw.include.is_empty() {
                        problems.add(
                            file,
                            vec!["include".into()],
                            "nested includes are not supported",
                            Some("include every file from the main policy".into()),
                        );
                    }
                    absorb(&mut merged, file, raw, problems);
                }
            }
            Err(e) => problems.add(
                0,
                vec!["include".into(), i.into()],
                format!("cannot read include {}: {e}", path.display()),
                Some("paths are relative to the main policy file".into()),
            ),
        }
    }
    Some(merged)
}

/// Moves the mergeable sections of one file into `merged`; other sections only count in the main file.
fn absorb(m: &mut Merged, file: usize, mut raw: RawPolicy, problems: &mut Problems) {
    for (name, u) in std::mem::take(&mut raw.upstreams) {
        if m.upstreams.contains_key(&name) {
            problems.add(
                file,
                vec!["upstreams".into(), name.clone().into()],
                format!("upstream `{name}` is declared twice"),
                Some("rename one of them".into()),
            );
        }
        m.upstreams.insert(name, (file, u));
    }
    for (name, r) in std::mem::take(&mut raw.roles) {
        if m.roles.contains_key(&name) {
            problems.add(
                file,
                vec!["roles".into(), name.clone().into()],
                format!("role `{name}` is declared twice"),
                Some("rename one of them".into()),
            );
        }
        m.roles.insert(name, (file, r));
    }
    for (name, t) in std::mem::take(&mut raw.tools) {
        m.tools.insert(name, (file, t));
    }
    for (name, t) in std::mem::take(&mut raw.tenants) {
        if m.tenants.contains_key(&name) {
            problems.add(
                file,
                vec!["tenants".into(), name.clone().into()],
                format!("tenant `{name}` is declared twice"),
                Some("declare each tenant's identifiers in one place".into()),
            );
        }
        m.tenants.insert(name, (file, t));
    }
    for (index, k) in std::mem::take(&mut raw.keys).into_iter().enumerate() {
        m.keys.push((Origin { file, index }, k));
    }
    for (index, r) in std::mem::take(&mut raw.routes).into_iter().enumerate() {
        m.routes.push((Origin { file, index }, r));
    }
    if file == 0 {
        m.main = raw;
    } else {
        main_only(file, &raw, problems);
    }
}

/// Sections an included file may not set.
fn main_only(file: usize, raw: &RawPolicy, problems: &mut Problems) {
    let sections = [
        (
            raw.listen.proxy.is_some()
                || raw.listen.admin.is_some()
                || raw.listen.proxy_tls.is_some()
                || raw.listen.admin_tls.is_some()
                || raw.listen.tls_watch_ms.is_some()
                || raw.listen.trusted_proxies.is_some(),
            "listen",
        ),
        (
            raw.admin.token_env.is_some()
                || raw.admin.token_file.is_some()
                || raw.admin.require_second.is_some()
                || raw.admin.max_auth_failures.is_some()
                || raw.admin.auth_failure_window.is_some(),
            "admin",
        ),
        (!raw.admins.is_empty(), "admins"),
        (raw.forensics.is_some(), "forensics"),
        (raw.storage.state_file.is_some() || raw.storage.audit_file.is_some(), "storage"),
        (!raw.levels.is_empty(), "levels"),
        (raw.safe_mode.reply.is_some(), "safe_mode"),
        (
            raw.audit.store_blocked_payloads.is_some()
                || raw.audit.on_failure.is_some()
                || raw.audit.key_env.is_some()
                || raw.audit.key_file.is_some()
                || raw.audit.previous_key_env.is_some()
                || raw.audit.previous_key_file.is_some(),
            "audit",
        ),
        (!raw.prompts.is_empty(), "prompts"),
        (raw.alerts.console_url.is_some() || !raw.alerts.sinks.is_empty(), "alerts"),
        (raw.circuit.is_some(), "circuit"),
    ];
    for (present, name) in sections {
        if present {
            problems.add(
                file,
                vec![name.into()],
                format!("[{name}] is only read from the main policy file"),
                Some("move it to the main file".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges a main file and includes written into a temporary directory; the messages found.
    fn merged(main: &str, includes: &[(&str, &str)]) -> (Option<Merged>, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in includes {
            std::fs::write(dir.path().join(name), text).expect("write include");
        }
        let mut sources = vec![PolicyFile { path: "main.toml".into(), text: main.to_owned() }];
        let mut p = Problems::default();
        let m = merge(&mut sources, dir.path(), &mut p);
        (m, p.locate(&sources).into_iter().map(|l| l.message).collect())
    }

    #[test]
    fn includes_add_their_mergeable_sections_with_their_file() {
        let (m, found) = merged(
            "include = [\"more.toml\"]\n[upstreams.a]\nkind = \"scripted\"\n[[keys]]\nid = \"k\"\nsha256 = \"\"\ntenant = \"t\"\nuser = \"u\"\nrole = \"r\"\n",
            &[("more.toml", "[upstreams.b]\nkind = \"scripted\"\n[[routes]]\napi = \"openai\"\nupstream = \"b\"\n")],
        );
        assert!(found.is_empty(), "{found:?}");
        let m = m.expect("merged");
        assert_eq!(m.upstreams["a"].0, 0);
        assert_eq!(m.upstreams["b"].0, 1);
        assert_eq!((m.routes[0].0.file, m.routes[0].0.index), (1, 0));
        assert_eq!((m.keys[0].0.file, m.keys[0].0.index), (0, 0));
        assert_eq!(m.main.include, vec!["more.toml".to_owned()]);
    }

    #[test]
    fn duplicates_nested_includes_and_main_only_sections_are_reported() {
        let (_, found) = merged(
            "include = [\"more.toml\", \"missing.toml\"]\n[upstreams.a]\nkind = \"scripted\"\n[roles.r]\n",
            &[("more.toml", "include = [\"x.toml\"]\n[upstreams.a]\nkind = \"scripted\"\n[roles.r]\n[levels.normal]\nrequests_per_minute = 1\n")],
        );
        for want in [
            "upstream `a` is declared twice",
            "role `r` is declared twice",
            "nested includes are not supported",
            "[levels] is only read from the main policy file",
        ] {
            assert!(found.iter().any(|m| m == want), "{want}: {found:?}");
        }
        assert!(found.iter().any(|m| m.starts_with("cannot read include ") && m.contains("missing.toml")), "{found:?}");
    }

    #[test]
    fn a_main_file_that_does_not_parse_stops_the_merge() {
        let (m, found) = merged("[listen\n", &[]);
        assert!(m.is_none());
        assert_eq!(found.len(), 1, "{found:?}");
    }
}
