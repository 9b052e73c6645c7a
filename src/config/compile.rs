//! Raw policy → validated, compiled [`Policy`]. Every problem is collected, never just the first.
//!
//! One module per section, each a few small functions with its own tests: `parse` (one file's
//! text, every unknown key reported), `merge` (the includes), `listen` (`[listen]`, `[limits]`),
//! `settings` (`[admin]` token, `[audit]`, `[storage]`, `[telemetry]`, `[safe_mode]`), `upstreams`,
//! `routes`, `access` (roles, tools, keys), `tenants` and `levels`. The sections with a file of
//! their own in `config/` (`tls`, `circuit`, `prompts`, `mcp`, `alerts`, `inspection`, `incidents`,
//! `admins`, `forensics`) are called from [`compile`] too, in the order it shows.

mod access;
mod levels;
mod listen;
mod merge;
mod parse;
mod routes;
mod settings;
mod tenants;
mod upstreams;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) use access::compile_args;
use merge::Merged;

use super::validate::{PolicyFile, Problems, Seg};
use super::{Located, Policy, PolicyError};

pub(super) fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PolicyError(vec![Located {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read policy: {e}"),
            hint: Some("check the path and permissions".into()),
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(path.to_path_buf(), text, &base)
}

pub(super) fn load_text(name: PathBuf, text: String, base: &Path) -> Result<Policy, PolicyError> {
    let mut sources = vec![PolicyFile { path: name, text }];
    let mut problems = Problems::default();
    let policy = merge::merge(&mut sources, base, &mut problems).and_then(|m| compile(m, base, &mut problems));
    match policy {
        Some(mut p) if problems.is_empty() => {
            p.source = sources[0].path.clone();
            p.sha256 = sources_digest(&sources);
            p.content_sha256 = super::fleet::content_digest(&sources);
            Ok(p)
        }
        _ => Err(PolicyError(problems.locate(&sources))),
    }
}

/// SHA-256 over every file of a policy (path and text, in load order): the policy in force, named
/// in forensic bundles.
fn sources_digest(sources: &[PolicyFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in sources {
        h.update(s.path.display().to_string().as_bytes());
        h.update(b"\0");
        h.update(s.text.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

pub(super) fn path<const N: usize>(segs: [Seg; N]) -> Vec<Seg> {
    segs.into()
}

pub(super) fn positive(v: Option<i64>, default: u64, file: usize, at: Vec<Seg>, problems: &mut Problems) -> u64 {
    match v {
        None => default,
        Some(n) if n > 0 => n as u64,
        Some(n) => {
            problems.add(
                file,
                at,
                format!("must be a positive number, not {n}"),
                Some(format!("the default is {default}")),
            );
            default
        }
    }
}

/// A path from the policy, relative to the policy's directory unless absolute.
pub(super) fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The merged policy, section by section, in this order (problems are reported in line order, but
/// a section that needs another's result comes after it).
fn compile(m: Merged, base: &Path, problems: &mut Problems) -> Option<Policy> {
    let raw = m.main;
    let listen = listen::listen(&raw.listen, base, problems);
    let admin_token_source = settings::admin_token_source(&raw.admin, base, problems);
    let audit = settings::audit(&raw.audit, base, problems);
    let storage = settings::storage(&raw.storage, base);
    let limits = listen::limits(&raw.limits, problems);
    let telemetry = settings::telemetry(&raw.telemetry, problems);
    let circuit = super::circuit::global(raw.circuit.as_ref(), problems);
    let upstreams = upstreams::compile(m.upstreams, &circuit, base, problems);
    // Managed prompts before routes and keys, which bind them.
    let managed_prompts = super::prompts::compile(&raw.prompts, base, problems);
    let routes = routes::compile(m.routes, &upstreams, &managed_prompts, problems);
    // MCP servers before roles, which name them.
    let mcp = super::mcp::compile(&raw, base, &circuit, problems);
    let alerts = super::alerts::compile(&raw.alerts, base, problems);
    let roles = access::roles(m.roles, &mcp, problems);
    let tools = access::tools(m.tools, problems);
    let (keys, key_ids) = access::keys(m.keys, &roles, &managed_prompts, problems);
    let tenants = tenants::compile(m.tenants, &key_ids, problems);
    let levels = levels::compile(&raw.levels, problems);
    let inspection = super::inspection::compile(&raw, &managed_prompts, base, problems);
    let incidents = super::incidents::IncidentPolicy::compile(&raw.incidents, &raw.triggers, &raw.plans, problems);
    // As before sections had modules: with no scanner, `[[admins]]` and `[forensics]` are not checked.
    let inspection = inspection?;
    let admins = super::admins::compile(&raw.admins, &raw.admin, problems);
    let forensics = super::forensics::compile(raw.forensics.as_ref(), base, problems);
    let fleet = super::fleet::compile(raw.fleet.as_ref(), base, problems);
    Some(Policy {
        scanner: inspection.scanner.clone(),
        base_scanner: inspection.scanner,
        managed_prompts: Arc::new(managed_prompts),
        egress: inspection.egress,
        prompts: inspection.prompts,
        injection: inspection.injection,
        source: PathBuf::new(),
        listen,
        admin_token_source,
        admins: Arc::new(admins),
        storage,
        limits,
        telemetry,
        upstreams,
        routes,
        keys,
        key_ids,
        roles,
        tools,
        mcp: Arc::new(mcp),
        tenants: Arc::new(tenants),
        levels,
        incidents: Arc::new(incidents),
        forensics: forensics.map(Arc::new),
        fleet: fleet.map(Arc::new),
        sha256: String::new(),
        content_sha256: String::new(),
        alerts: Arc::new(alerts),
        audit,
        safe_mode_reply: settings::safe_mode_reply(raw.safe_mode),
    })
}

/// Names for a hint (`a, b`), or `(none)`.
fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::raw::RawPolicy;

    /// One policy file's sections, parsed (the test text must parse).
    pub(in crate::config) fn raw(text: &str) -> RawPolicy {
        toml::from_str(text).expect("test policy parses")
    }

    /// The problems found, located in `text` (file `t.toml`), in line order.
    pub(in crate::config) fn located(problems: Problems, text: &str) -> Vec<Located> {
        problems.locate(&[PolicyFile { path: "t.toml".into(), text: text.to_owned() }])
    }

    #[test]
    fn a_good_policy_compiles_and_names_its_files_digest() {
        let text = "[upstreams.s]\nkind = \"scripted\"\n[[upstreams.s.replies]]\ntext = \"hi\"\n";
        let p = load_text("t.toml".into(), text.to_owned(), Path::new(".")).expect("compiles");
        assert_eq!(p.source, PathBuf::from("t.toml"));
        assert_eq!(p.sha256.len(), 64);
        assert_eq!(p.routes.len(), 2);
    }

    #[test]
    fn problems_of_every_section_are_reported_together() {
        let text = "[listen]\nproxy = \"nowhere\"\n[limits]\nidle_timeout_ms = -1\n[levels.panic]\n\
                    [upstreams.x]\nkind = \"telepathy\"\n";
        let e = load_text("t.toml".into(), text.to_owned(), Path::new(".")).expect_err("problems");
        let lines: Vec<usize> = e.0.iter().map(|l| l.line).collect();
        assert_eq!(lines, [2, 4, 5, 7], "{e}");
    }

    #[test]
    fn positive_numbers_and_paths() {
        let mut p = Problems::default();
        assert_eq!(positive(None, 3, 0, path(["a".into()]), &mut p), 3);
        assert_eq!(positive(Some(9), 3, 0, path(["a".into()]), &mut p), 9);
        assert!(p.is_empty());
        assert_eq!(positive(Some(0), 3, 0, path(["a".into()]), &mut p), 3);
        assert_eq!(p.len(), 1);
        assert_eq!(resolve_path(Path::new("/etc/fb"), "x.pem"), PathBuf::from("/etc/fb/x.pem"));
        assert_eq!(resolve_path(Path::new("/etc/fb"), "/abs.pem"), PathBuf::from("/abs.pem"));
        assert_eq!(names([].iter()), "(none)");
        assert_eq!(names(["a".to_owned(), "b".to_owned()].iter()), "a, b");
    }
}
