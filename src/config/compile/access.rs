//! Who may do what: `[roles.NAME]`, `[tools.NAME]` (with argument constraints) and `[[keys]]`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::merge::Origin;
use super::{names, path, positive};
use crate::config::mcp::{self, McpPolicy};
use crate::config::prompts::{self, ManagedPrompt};
use crate::config::raw::{RawArg, RawKey, RawRole, RawTool};
use crate::config::validate::{Problems, Seg};
use crate::config::{ArgRule, GlobSet, KeyEntry, Role, ToolInfo};

/// Virtual keys by the SHA-256 of the key, and by id.
pub(super) type Keys = (HashMap<[u8; 32], Arc<KeyEntry>>, BTreeMap<String, Arc<KeyEntry>>);

/// `[roles.NAME]`; their MCP globs must name servers of `mcp`.
pub(super) fn roles(
    raw: BTreeMap<String, (usize, RawRole)>,
    mcp: &McpPolicy,
    problems: &mut Problems,
) -> HashMap<String, Role> {
    let mut roles = HashMap::new();
    for (name, (file, r)) in raw {
        let refuse_disallowed_tools = match r.disallowed_tools.as_deref() {
            None | Some("strip") => false,
            Some("refuse") => true,
            Some(other) => {
                problems.add(
                    file,
                    path(["roles".into(), name.clone().into(), "disallowed_tools".into()]),
                    format!("unknown action `{other}`"),
                    Some("use \"strip\" or \"refuse\"".into()),
                );
                false
            }
        };
        let mcp_globs = r.mcp.as_ref().map(|t| {
            mcp::check_role(mcp, file, &name, t, problems);
            let servers = GlobSet::new(t.iter().map(|g| g.split('/').next().unwrap_or("")));
            (GlobSet::new(t.iter().map(String::as_str)), servers)
        });
        roles.insert(
            name,
            Role {
                tools: r.tools.as_ref().map(|t| GlobSet::new(t.iter().map(String::as_str))),
                mcp: mcp_globs,
                models: r.models.as_ref().map(|t| GlobSet::new(t.iter().map(String::as_str))),
                refuse_disallowed_tools,
            },
        );
    }
    roles
}

/// `[tools.NAME]`.
pub(super) fn tools(raw: BTreeMap<String, (usize, RawTool)>, problems: &mut Problems) -> HashMap<String, ToolInfo> {
    let mut tools = HashMap::new();
    for (name, (file, t)) in raw {
        let args = compile_args(&t.args, file, &path(["tools".into(), name.clone().into()]), problems);
        tools.insert(name, ToolInfo { side_effects: t.side_effects, data: t.data.unwrap_or(!t.side_effects), args });
    }
    tools
}

/// Compiles the argument constraints of a tool; `at` is the tool's table.
pub(in crate::config) fn compile_args(
    raw: &BTreeMap<String, RawArg>,
    file: usize,
    at: &[Seg],
    problems: &mut Problems,
) -> BTreeMap<String, ArgRule> {
    let mut args = BTreeMap::new();
    for (arg, a) in raw {
        let at = |k: &str| {
            let mut p = at.to_vec();
            p.extend(["args".into(), arg.clone().into(), k.into()]);
            p
        };
        let pattern = a.pattern.as_deref().and_then(|p| match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.add(
                    file,
                    at("pattern"),
                    format!("invalid pattern: {e}"),
                    Some("Rust regex syntax; it must match the whole value".into()),
                );
                None
            }
        });
        let max_len = a.max_len.map(|n| positive(Some(n), 1, file, at("max_len"), problems) as usize);
        args.insert(arg.clone(), ArgRule { values: a.values.clone(), pattern, max_len, required: a.required });
    }
    args
}

/// `[[keys]]`: each key's role must be one of `roles`, its prompt one of `managed_prompts`; ids and
/// hashes unique.
pub(super) fn keys(
    raw: Vec<(Origin, RawKey)>,
    roles: &HashMap<String, Role>,
    managed_prompts: &BTreeMap<String, ManagedPrompt>,
    problems: &mut Problems,
) -> Keys {
    let mut keys = HashMap::new();
    let mut key_ids = BTreeMap::new();
    for (o, k) in raw {
        let at = |f: &str| path(["keys".into(), o.index.into(), f.into()]);
        let (entry, digest) = key(&o, k, roles, managed_prompts, problems);
        if key_ids.insert(entry.id.clone(), entry.clone()).is_some() {
            problems.add(
                o.file,
                at("id"),
                format!("key id `{}` is used twice", entry.id),
                Some("key ids must be unique".into()),
            );
        }
        if let Some(digest) = digest {
            let id = entry.id.clone();
            if keys.insert(digest, entry).is_some() {
                problems.add(
                    o.file,
                    at("sha256"),
                    format!("key `{id}` has the same hash as another key"),
                    Some("issue a new key".into()),
                );
            }
        }
    }
    (keys, key_ids)
}

/// One key's principal, and its digest when the hash is well formed.
fn key(
    o: &Origin,
    k: RawKey,
    roles: &HashMap<String, Role>,
    managed_prompts: &BTreeMap<String, ManagedPrompt>,
    problems: &mut Problems,
) -> (Arc<KeyEntry>, Option<[u8; 32]>) {
    let at = |f: &str| path(["keys".into(), o.index.into(), f.into()]);
    let mut digest = [0u8; 32];
    let hash_ok = k.sha256.len() == 64 && hex::decode_to_slice(&k.sha256, &mut digest).is_ok();
    if !hash_ok {
        problems.add(
            o.file,
            at("sha256"),
            format!("key `{}`: sha256 must be 64 hex digits", k.id),
            Some("run `firebreak key new --id ID` or `printf %s KEY | sha256sum`".into()),
        );
    }
    if !roles.contains_key(&k.role) {
        problems.add(
            o.file,
            at("role"),
            format!("key `{}`: unknown role `{}`", k.id, k.role),
            Some(format!("roles declared: {}", names(roles.keys()))),
        );
    }
    for (field, v) in [("id", &k.id), ("tenant", &k.tenant), ("user", &k.user)] {
        if v.trim().is_empty() {
            problems.add(o.file, at(field), format!("key {field} must not be empty"), None);
        }
    }
    let expires = match &k.expires {
        None => None,
        Some(s) => match humantime::parse_rfc3339_weak(s) {
            Ok(t) => Some(t),
            Err(_) => {
                problems.add(
                    o.file,
                    at("expires"),
                    format!("`{s}` is not a date-time"),
                    Some("write RFC 3339 UTC, e.g. 2027-01-31T00:00:00Z".into()),
                );
                None
            }
        },
    };
    let prompt = prompts::check_binding(managed_prompts, k.prompt.as_deref(), o.file, at("prompt"), problems);
    let entry = Arc::new(KeyEntry { id: k.id, tenant: k.tenant, user: k.user, role: k.role, expires, prompt });
    (entry, hash_ok.then_some(digest))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{located, raw};
    use super::*;

    const HASH_A: &str = "391594d5130b8100f52f2968cbb371d1aa750b5a0284e03478e200b5082861a1";

    type Roles = HashMap<String, Role>;
    type Tools = HashMap<String, ToolInfo>;
    type Found = Vec<(usize, String)>;

    fn compiled(text: &str) -> (Roles, Tools, Keys, Found) {
        let r = raw(text);
        let mut p = Problems::default();
        let roles = roles(r.roles.into_iter().map(|(n, x)| (n, (0, x))).collect(), &McpPolicy::default(), &mut p);
        let tools = tools(r.tools.into_iter().map(|(n, x)| (n, (0, x))).collect(), &mut p);
        let ks = r.keys.into_iter().enumerate().map(|(index, k)| (Origin { file: 0, index }, k)).collect();
        let keys = keys(ks, &roles, &BTreeMap::new(), &mut p);
        let found = located(p, text).into_iter().map(|l| (l.line, l.message)).collect();
        (roles, tools, keys, found)
    }

    #[test]
    fn roles_tools_and_keys_compile() {
        let text = format!(
            "[roles.dev]\ntools = [\"search_*\"]\ndisallowed_tools = \"refuse\"\n\
             [tools.deploy]\nside_effects = true\n[tools.deploy.args.env]\nvalues = [\"staging\"]\npattern = \"[a-z]+\"\n\
             [[keys]]\nid = \"k1\"\nsha256 = \"{HASH_A}\"\ntenant = \"acme\"\nuser = \"alice\"\nrole = \"dev\"\n\
             expires = \"2027-01-31T00:00:00Z\"\n"
        );
        let (roles, tools, (keys, ids), found) = compiled(&text);
        assert!(found.is_empty(), "{found:?}");
        let dev = &roles["dev"];
        assert!(dev.refuse_disallowed_tools && dev.mcp.is_none() && dev.models.is_none());
        assert!(dev.tools.as_ref().is_some_and(|g| g.matches("search_web") && !g.matches("deploy")));
        let deploy = &tools["deploy"];
        assert!(deploy.side_effects && !deploy.data);
        let env = &deploy.args["env"];
        assert!(env.pattern.as_ref().is_some_and(|r| r.is_match("abc") && !r.is_match("abc1")), "anchored");
        assert_eq!(env.values.as_deref(), Some(&["staging".to_owned()][..]));
        let mut digest = [0u8; 32];
        hex::decode_to_slice(HASH_A, &mut digest).expect("hex");
        assert_eq!(keys[&digest].user, "alice");
        assert!(ids["k1"].expires.is_some());
    }

    #[test]
    fn bad_roles_tools_and_keys_are_reported_at_their_keys() {
        let text = format!(
            "[roles.dev]\ndisallowed_tools = \"explode\"\nmcp = [\"nosuch/*\"]\n\
             [tools.t.args.a]\npattern = \"(\"\nmax_len = 0\n\
             [[keys]]\nid = \"k1\"\nsha256 = \"zz\"\ntenant = \" \"\nuser = \"u\"\nrole = \"wizard\"\nexpires = \"soon\"\n\
             [[keys]]\nid = \"k2\"\nsha256 = \"{HASH_A}\"\ntenant = \"t\"\nuser = \"u\"\nrole = \"dev\"\n\
             [[keys]]\nid = \"k2\"\nsha256 = \"{HASH_A}\"\ntenant = \"t\"\nuser = \"u\"\nrole = \"dev\"\n"
        );
        let (_, _, (keys, ids), found) = compiled(&text);
        assert_eq!((keys.len(), ids.len()), (1, 2));
        let msgs: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(msgs[0], "unknown action `explode`");
        assert_eq!(msgs[1], "`nosuch/*` does not name a declared MCP server");
        assert!(msgs[2].starts_with("invalid pattern: "), "{msgs:?}");
        let rest = [
            "must be a positive number, not 0",
            "key `k1`: sha256 must be 64 hex digits",
            "key tenant must not be empty",
            "key `k1`: unknown role `wizard`",
            "`soon` is not a date-time",
            "key id `k2` is used twice",
            "key `k2` has the same hash as another key",
        ];
        assert_eq!(msgs[3..], rest, "{found:?}");
        let line = |m: &str| found.iter().find(|(_, x)| x == m).map(|(l, _)| *l);
        assert_eq!(line("key `k1`: unknown role `wizard`"), Some(12));
        assert_eq!(line("key id `k2` is used twice"), Some(21));
    }
}
