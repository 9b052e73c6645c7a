//! `[tenants.X] identifiers`: each one long enough, owned by one tenant only, and every tenant one
//! that keys belong to (a misspelt tenant would make its own users trip the detector).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::path;
use crate::config::raw::RawTenant;
use crate::config::validate::Problems;
use crate::config::KeyEntry;
use crate::inspect::tenants::{self, TenantIds};

/// The tenants' identifiers, checked against the tenants of `key_ids` and each other.
pub(super) fn compile(
    raw: BTreeMap<String, (usize, RawTenant)>,
    key_ids: &BTreeMap<String, Arc<KeyEntry>>,
    problems: &mut Problems,
) -> TenantIds {
    let known: BTreeSet<&str> = key_ids.values().map(|k| k.tenant.as_str()).collect();
    let mut owner_of: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let mut files = HashMap::new();
    for (name, (file, t)) in raw {
        files.insert(name.clone(), file);
        let at = |i: usize| path(["tenants".into(), name.clone().into(), "identifiers".into(), i.into()]);
        if !known.contains(name.as_str()) {
            problems.add(
                file,
                path(["tenants".into(), name.clone().into()]),
                format!("tenant `{name}` is not the tenant of any key"),
                Some(format!(
                    "name a tenant as written in [[keys]] tenant = \"…\"; tenants with keys: {}",
                    if known.is_empty() {
                        "(none)".to_owned()
                    } else {
                        known.iter().copied().collect::<Vec<_>>().join(", ")
                    }
                )),
            );
        }
        let mut ids = Vec::new();
        for (i, id) in t.identifiers.into_iter().enumerate() {
            if let Some(why) = tenants::check(&id) {
                problems.add(file, at(i), why, Some("use a distinctive prefix or domain, e.g. \"ACME-CUST-\"".into()));
                continue;
            }
            match owner_of.insert(id.to_ascii_lowercase(), name.clone()) {
                Some(other) if other != name => problems.add(
                    file,
                    at(i),
                    format!("identifier `{id}` is declared for tenants `{other}` and `{name}`"),
                    Some("an identifier must belong to one tenant".into()),
                ),
                _ => ids.push(id),
            }
        }
        out.push((name, ids));
    }
    overlaps(&out, &files, problems);
    TenantIds::new(&out).unwrap_or_else(|e| {
        problems.add(0, path(["tenants".into()]), format!("tenant identifiers: {e}"), None);
        TenantIds::default()
    })
}

/// An identifier inside another tenant's (`ACME-` in `XACME-1`) would make that tenant's own data
/// look like a leak of this one's, and contain its users.
fn overlaps(out: &[(String, Vec<String>)], files: &HashMap<String, usize>, problems: &mut Problems) {
    for (a, ids_a) in out {
        for (b, ids_b) in out.iter().filter(|(b, _)| b != a) {
            for long in ids_a {
                let lower = long.to_ascii_lowercase();
                if let Some(short) = ids_b.iter().find(|s| lower.contains(&s.to_ascii_lowercase())) {
                    problems.add(
                        files.get(a).copied().unwrap_or(0),
                        path(["tenants".into(), a.clone().into(), "identifiers".into()]),
                        format!("identifier `{long}` of tenant `{a}` contains `{short}` of tenant `{b}`"),
                        Some(format!("`{a}`'s own data would count as `{b}`'s: make `{short}` more specific")),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{located, raw};
    use super::*;

    fn key(tenant: &str) -> (String, Arc<KeyEntry>) {
        let e = KeyEntry {
            id: format!("k-{tenant}"),
            tenant: tenant.into(),
            user: "u".into(),
            role: "r".into(),
            expires: None,
            prompt: None,
        };
        (e.id.clone(), Arc::new(e))
    }

    fn tenants(text: &str, with_keys: &[&str]) -> Vec<(usize, String)> {
        let r = raw(text);
        let keys: BTreeMap<String, Arc<KeyEntry>> = with_keys.iter().map(|t| key(t)).collect();
        let mut p = Problems::default();
        compile(r.tenants.into_iter().map(|(n, t)| (n, (0, t))).collect(), &keys, &mut p);
        located(p, text).into_iter().map(|l| (l.line, l.message)).collect()
    }

    #[test]
    fn distinct_identifiers_of_known_tenants_compile() {
        let found = tenants(
            "[tenants.acme]\nidentifiers = [\"ACME-CUST-\"]\n[tenants.globex]\nidentifiers = [\"GLOBEX-\"]\n",
            &["acme", "globex"],
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn unknown_tenants_shared_and_nested_identifiers_are_reported() {
        let text = "[tenants.acme]\nidentifiers = [\"XACME-1\", \"SHARED-ID\"]\n\
                    [tenants.ghost]\nidentifiers = [\"ACME-\", \"shared-id\"]\n";
        let found = tenants(text, &["acme"]);
        let msgs: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
        assert!(msgs.contains(&"tenant `ghost` is not the tenant of any key"), "{found:?}");
        assert!(msgs.contains(&"identifier `shared-id` is declared for tenants `acme` and `ghost`"), "{found:?}");
        assert!(
            msgs.contains(&"identifier `XACME-1` of tenant `acme` contains `ACME-` of tenant `ghost`"),
            "{found:?}"
        );
        assert_eq!(found.len(), 3, "{found:?}");
    }
}
