//! Forensic bundles: everything an investigation hands over about one incident, in one JSON file
//! that can be verified offline (`firebreak audit verify-bundle FILE`).
//!
//! Why one JSON file and not a tar: the parts are JSON already, the admin API answers JSON, `jq`
//! reads any part, and no archive code (or crate) is needed on either side. Each part is hashed
//! over its canonical serialisation (serde_json's, compact), which re-parsing never changes, so a
//! changed byte anywhere in a part changes its hash.
//!
//! ```text
//! { "format": "firebreak-bundle/1",
//!   "parts": {
//!     "incident": { the incident: trigger, principal, evidence ids, actions, checklist, notes },
//!     "timeline": [ every audit record naming the incident, oldest first ],
//!     "audit":    { "window": {from, to}, "records": [ the principal's and sessions' records in the
//!                   window, and the timeline's, verbatim ], "links": [[seq, prev, mac] for every
//!                   record from the first selected to the last], "head": {seq, mac, kid, head_mac},
//!                   "verification": the whole trail's `audit verify` result at export },
//!     "evidence": { "file", "sha256" (as in the store's MANIFEST.sha256), "text" (the file) } or
//!                 { "captured": false },
//!     "context":  { policy_sha256, switch_version, switch_versions seen in the window } },
//!   "manifest": { "parts": {name: sha256}, "incident", "exported_by", "exported_at", "kid", "mac" } }
//! ```
//!
//! What verification proves, with the audit key: no part was changed since export (its hash is in
//! the manifest, and the manifest carries an HMAC-SHA-256 with the audit key, so a rewritten
//! manifest is caught too); every audit record was written by the gateway (its own MAC) and the
//! records sit where they say in one unbroken chain (the links); the head names where the trail
//! stood at export. Without the key only the hashes and the links' structure can be checked:
//! anyone can recompute those, so the result is UNPROVEN. A holder of the key can forge anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::audit::AuditKey;
use crate::incident::Incident;

/// The bundle format this code writes and reads.
pub const FORMAT: &str = "firebreak-bundle/1";
/// The parts every bundle has, in order.
pub const PARTS: [&str; 5] = ["incident", "timeline", "audit", "evidence", "context"];
/// Most audit records a bundle carries (the newest are kept when more match).
const MAX_RECORDS: usize = 100_000;

/// What an export needs.
#[derive(Debug)]
pub struct Export<'a> {
    /// The incident.
    pub incident: &'a Incident,
    /// Who exports (recorded in the manifest).
    pub actor: &'a str,
    /// The audit trail.
    pub audit_file: &'a Path,
    /// The key the trail is written with (signs the manifest), then any earlier ones.
    pub keys: Vec<AuditKey>,
    /// The evidence store, when capture is on.
    pub evidence_dir: Option<&'a Path>,
    /// The window before and after the incident whose records are included.
    pub before: Duration,
    /// …and after.
    pub after: Duration,
    /// SHA-256 of the policy in force.
    pub policy_sha256: &'a str,
    /// The switch version in force.
    pub switch_version: u64,
}

/// SHA-256 hex of a part's canonical serialisation.
pub fn part_hash(v: &Value) -> String {
    hex::encode(Sha256::digest(serde_json::to_string(v).unwrap_or_default().as_bytes()))
}

fn time_of(v: &Value) -> Option<SystemTime> {
    v.get("time").and_then(Value::as_str).and_then(|t| humantime::parse_rfc3339_weak(t).ok())
}

/// Builds the bundle. Blocking (reads the trail and the store).
pub fn build(x: &Export<'_>) -> Result<Value, String> {
    let key = x.keys.first().ok_or("no audit key to sign the bundle with")?;
    let inc = x.incident;
    // The whole trail is verified first; the records taken are the verified ones.
    let verification = match crate::audit::verify(
        x.audit_file,
        &crate::audit::VerifyOptions { keys: x.keys.clone(), allow_missing_head: false },
    ) {
        Ok(r) => {
            json!({"ok": true, "proven": r.proven(), "summary": r.summary(), "records": r.records, "last_mac": r.last_mac})
        }
        Err(e) => json!({"ok": false, "proven": false, "error": e.to_string()}),
    };
    let text = std::fs::read_to_string(x.audit_file).map_err(|e| format!("{}: {e}", x.audit_file.display()))?;
    let verified = verification.get("records").and_then(Value::as_u64).unwrap_or(u64::MAX);
    let first = humantime::parse_rfc3339_weak(&inc.first_seen).map_err(|e| format!("incident time: {e}"))?;
    let now = SystemTime::now();
    let from = first.checked_sub(x.before).unwrap_or(first);
    let end = inc.resolved_at.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok()).map(|t| t + x.after);
    let to = end.map_or(now, |e| e.min(now));
    let user = inc.principal.user.as_deref();
    let mut sessions: BTreeSet<String> =
        inc.principal.sessions.iter().map(|s| crate::audit::session_digest(s)).collect();
    if let Some(s) = &inc.principal.session {
        sessions.insert(crate::audit::session_digest(s));
    }
    let mut links: Vec<Value> = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    let mut timeline: Vec<Value> = Vec::new();
    let mut versions = BTreeSet::new();
    let mut last_verified: Option<(u64, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if n as u64 >= verified {
            break;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if let (Some(seq), Some(mac)) =
            (v.get("seq").and_then(Value::as_u64), v.get("mac").or_else(|| v.get("hash")).and_then(Value::as_str))
        {
            last_verified = Some((seq, mac.to_owned()));
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let names_incident = s("incident") == Some(inc.id.as_str());
        let in_window = time_of(&v).is_some_and(|t| t >= from && t <= to);
        let principal = (user.is_some() && s("user") == user) || s("session").is_some_and(|d| sessions.contains(d));
        if names_incident {
            timeline.push(json!({
                "seq": v.get("seq"), "time": v.get("time"), "kind": v.get("kind"), "event": v.get("event"),
                "actor": v.get("actor"), "plan": v.get("plan"), "rule": v.get("rule"),
                "after_version": v.get("after_version"),
            }));
        }
        if (in_window && principal) || names_incident {
            if let Some(ver) = v.get("after_version").and_then(Value::as_u64) {
                versions.insert(ver);
            }
            records.push(v.clone());
        }
        if !records.is_empty() {
            links.push(json!([v.get("seq"), v.get("prev"), v.get("mac").or_else(|| v.get("hash"))]));
        }
    }
    if records.len() > MAX_RECORDS {
        records.drain(..records.len() - MAX_RECORDS);
    }
    // Links from the first record kept to the last one: nothing after it is needed.
    let last_seq = records.last().and_then(|r| r.get("seq")).and_then(Value::as_u64);
    let first_seq = records.first().and_then(|r| r.get("seq")).and_then(Value::as_u64);
    links.retain(|l| {
        let seq = l.get(0).and_then(Value::as_u64);
        seq >= first_seq && seq <= last_seq
    });
    // Where the verified trail stood at export, attested with the key.
    let head = match (&last_verified, verification["ok"].as_bool()) {
        (Some((seq, mac)), Some(true)) => {
            json!({"seq": seq, "mac": mac, "kid": key.id(), "head_mac": key.head_mac(*seq, mac)})
        }
        _ => Value::Null,
    };
    let evidence = match x.evidence_dir {
        None => json!({"captured": false, "why": "[forensics] is off"}),
        Some(dir) => match super::store::read_incident(dir, &inc.id).map_err(|e| e.to_string())? {
            None => json!({"captured": false, "why": "no evidence file for this incident in the store"}),
            Some((_, sha, listed)) => {
                let path = super::store::incident_file(dir, &inc.id).ok_or("bad incident id")?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                // Hash what is handed over, which is what the manifest of the store names when
                // nothing was appended in between.
                let digest = hex::encode(Sha256::digest(text.as_bytes()));
                json!({"captured": true, "file": format!("{}.jsonl", inc.id), "sha256": digest,
                       "matches_store_manifest": listed && digest == sha, "text": text})
            }
        },
    };
    let parts = json!({
        "incident": serde_json::to_value(inc).map_err(|e| e.to_string())?,
        "timeline": timeline,
        "audit": {
            "window": {"from": humantime::format_rfc3339_seconds(from).to_string(), "to": humantime::format_rfc3339_seconds(to).to_string()},
            "records": records,
            "links": links,
            "head": head,
            "verification": verification,
        },
        "evidence": evidence,
        "context": {
            "policy_sha256": x.policy_sha256,
            "switch_version": x.switch_version,
            "switch_versions": versions.into_iter().collect::<Vec<_>>(),
            "actions_versions": inc.actions.iter().filter_map(|a| a.version).collect::<Vec<_>>(),
        },
    });
    let hashes: Map<String, Value> =
        PARTS.iter().map(|p| ((*p).to_owned(), Value::from(part_hash(&parts[*p])))).collect();
    let mut manifest = json!({
        "algorithm": "sha256",
        "parts": hashes,
        "incident": inc.id,
        "exported_by": x.actor,
        "exported_at": humantime::format_rfc3339_seconds(now).to_string(),
        "kid": key.id(),
    });
    let mac = key.mac(manifest_message(&manifest).as_bytes());
    manifest["mac"] = Value::from(mac);
    Ok(json!({"format": FORMAT, "parts": parts, "manifest": manifest}))
}

/// What the manifest MAC covers: a label (so no record MAC is a valid manifest MAC) and the
/// manifest's canonical serialisation without `mac`.
fn manifest_message(manifest: &Value) -> String {
    let mut m = manifest.clone();
    if let Value::Object(o) = &mut m {
        o.remove("mac");
    }
    format!("firebreak bundle manifest\n{}", serde_json::to_string(&m).unwrap_or_default())
}

/// The result of verifying a bundle.
#[derive(Debug)]
pub enum Verdict {
    /// Every check passed with the key.
    Ok(String),
    /// Consistent, but authenticity not proven (no key, or the trail was unproven at export).
    Unproven(String),
    /// The named part fails.
    Tampered(String),
}

/// Verifies a bundle's text with `keys` (none: structure and hashes only).
pub fn verify(text: &str, keys: &[AuditKey]) -> Verdict {
    use Verdict::Tampered;
    let Ok(b) = serde_json::from_str::<Value>(text) else {
        return Tampered("the file is not a JSON bundle (damaged or truncated)".into());
    };
    if b.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Tampered(format!("not a {FORMAT} bundle"));
    }
    let (parts, manifest) = (&b["parts"], &b["manifest"]);
    let Some(hashes) = manifest.get("parts").and_then(Value::as_object) else {
        return Tampered("manifest: no part hashes".into());
    };
    for p in PARTS {
        let Some(part) = parts.get(p) else { return Tampered(format!("part `{p}` is missing")) };
        match hashes.get(p).and_then(Value::as_str) {
            Some(h) if h == part_hash(part) => {}
            Some(_) => {
                return Tampered(format!("part `{p}` does not match its SHA-256 in the manifest: it was changed"))
            }
            None => return Tampered(format!("manifest: no hash for part `{p}`")),
        }
    }
    if let Some(extra) = parts.as_object().and_then(|o| o.keys().find(|k| !PARTS.contains(&k.as_str()))) {
        return Tampered(format!("part `{extra}` is not in the manifest: it was added"));
    }
    let key_of = |kid: Option<&str>| kid.and_then(|k| keys.iter().find(|x| x.id() == k));
    let kid = manifest.get("kid").and_then(Value::as_str);
    let manifest_key = key_of(kid);
    if let Some(k) = manifest_key {
        let mac = manifest.get("mac").and_then(Value::as_str).unwrap_or("");
        if !k.verify(manifest_message(manifest).as_bytes(), mac) {
            return Tampered(
                "manifest: its MAC does not match (the exporter, time or part hashes were rewritten)".into(),
            );
        }
    }
    // The audit records and their chain.
    let audit = &parts["audit"];
    let records = audit["records"].as_array().map(Vec::as_slice).unwrap_or_default();
    let links = audit["links"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut authenticated = 0usize;
    let mut unproven: Vec<String> = Vec::new();
    for r in records {
        let mut m = r.as_object().cloned().unwrap_or_default();
        let seq = m.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let mac = match (m.remove("mac"), m.remove("hash")) {
            (Some(Value::String(mac)), None) => mac,
            // A record written before audit keys existed: its hash only, which anyone can recompute.
            (None, Some(Value::String(hash))) => {
                if crate::audit::record_hash(&m) != hash {
                    return Tampered(format!("audit record seq {seq}: its hash does not match: the record was edited"));
                }
                unproven.push(format!("record seq {seq} is a legacy unkeyed record"));
                let Some(link) = links.iter().find(|l| l.get(0).and_then(Value::as_u64) == Some(seq)) else {
                    return Tampered(format!("audit record seq {seq}: not in the chain's links"));
                };
                if link.get(1) != r.get("prev") || link.get(2).and_then(Value::as_str) != Some(hash.as_str()) {
                    return Tampered(format!("audit record seq {seq}: does not match its link in the chain"));
                }
                continue;
            }
            _ => return Tampered(format!("audit record seq {seq}: no MAC")),
        };
        match key_of(m.get("kid").and_then(Value::as_str)) {
            Some(k) => {
                if !k.verify(serde_json::to_string(&m).unwrap_or_default().as_bytes(), &mac) {
                    return Tampered(format!("audit record seq {seq}: its MAC does not match: the record was edited"));
                }
                authenticated += 1;
            }
            None => unproven.push(format!("record seq {seq}: no key for its key id")),
        }
        let Some(link) = links.iter().find(|l| l.get(0).and_then(Value::as_u64) == Some(seq)) else {
            return Tampered(format!("audit record seq {seq}: not in the chain's links"));
        };
        if link.get(1) != r.get("prev") || link.get(2).and_then(Value::as_str) != Some(mac.as_str()) {
            return Tampered(format!("audit record seq {seq}: does not match its link in the chain"));
        }
    }
    for w in links.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (sa, sb) = (a.get(0).and_then(Value::as_u64), b.get(0).and_then(Value::as_u64));
        if sa.map(|s| s + 1) != sb || b.get(1) != a.get(2) {
            return Tampered(format!(
                "audit chain: the link after seq {} does not continue it (records removed, inserted or reordered)",
                sa.unwrap_or(0)
            ));
        }
    }
    let head = &audit["head"];
    if let (Some(seq), Some(mac)) = (head.get("seq").and_then(Value::as_u64), head.get("mac").and_then(Value::as_str)) {
        if let Some(last) = links.last() {
            if last.get(0).and_then(Value::as_u64) == Some(seq) && last.get(2).and_then(Value::as_str) != Some(mac) {
                return Tampered("audit head: does not match the last link".into());
            }
        }
        match key_of(head.get("kid").and_then(Value::as_str)) {
            Some(k)
                if k.verify(
                    crate::audit::head_message(seq, mac).as_bytes(),
                    head["head_mac"].as_str().unwrap_or(""),
                ) => {}
            Some(_) => return Tampered("audit head: its MAC does not match".into()),
            None => unproven.push("head: no key for its key id".into()),
        }
    }
    // The evidence text against its recorded hash (the hash the store's manifest names).
    let ev = &parts["evidence"];
    if let (Some(text), Some(sha)) = (ev.get("text").and_then(Value::as_str), ev.get("sha256").and_then(Value::as_str))
    {
        if hex::encode(Sha256::digest(text.as_bytes())) != sha {
            return Tampered("part `evidence`: the file does not match its SHA-256".into());
        }
    }
    let summary = format!(
        "incident {}, exported by {} at {}; {} audit record(s) ({} authenticated), {} chain link(s); evidence {}",
        manifest["incident"].as_str().unwrap_or("?"),
        manifest["exported_by"].as_str().unwrap_or("?"),
        manifest["exported_at"].as_str().unwrap_or("?"),
        records.len(),
        authenticated,
        links.len(),
        if ev["captured"] == Value::Bool(true) { "captured" } else { "not captured" },
    );
    if manifest_key.is_none() {
        unproven.push(match kid {
            Some(k) => format!("no key given for the manifest's key id {k}"),
            None => "the manifest names no key".into(),
        });
    }
    if audit["verification"]["proven"] != Value::Bool(true) {
        unproven.push(format!(
            "the trail was not proven at export: {}",
            audit["verification"]["error"].as_str().or(audit["verification"]["summary"].as_str()).unwrap_or("?")
        ));
    }
    if unproven.is_empty() {
        Verdict::Ok(summary)
    } else {
        Verdict::Unproven(format!("{summary}; NOT proven: {}", unproven.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `n` keyed records and a bundle selecting `pick` of them (links over the span).
    fn bundle(key: &AuditKey, n: u64, pick: &[u64], drop_link: Option<u64>) -> String {
        let mut prev = crate::audit::GENESIS.to_owned();
        let mut all = Vec::new();
        for seq in 1..=n {
            let mut m = Map::new();
            m.insert("kind".into(), json!("request"));
            m.insert("seq".into(), json!(seq));
            m.insert("prev".into(), json!(prev));
            m.insert("kid".into(), json!(key.id()));
            let mac = key.mac(serde_json::to_string(&m).unwrap_or_default().as_bytes());
            m.insert("mac".into(), json!(mac));
            prev = mac;
            all.push(Value::Object(m));
        }
        let records: Vec<Value> =
            all.iter().filter(|r| pick.contains(&r["seq"].as_u64().unwrap_or(0))).cloned().collect();
        let (lo, hi) = (pick[0], pick[pick.len() - 1]);
        let links: Vec<Value> = all
            .iter()
            .filter(|r| (lo..=hi).contains(&r["seq"].as_u64().unwrap_or(0)) && r["seq"].as_u64() != drop_link)
            .map(|r| json!([r["seq"], r["prev"], r["mac"]]))
            .collect();
        let head = json!({"seq": n, "mac": prev, "kid": key.id(), "head_mac": key.head_mac(n, &prev)});
        let parts = json!({
            "incident": {"id": "INC-00001"}, "timeline": [],
            "audit": {"records": records, "links": links, "head": head, "verification": {"ok": true, "proven": true}},
            "evidence": {"captured": false}, "context": {},
        });
        let hashes: Map<String, Value> =
            PARTS.iter().map(|p| ((*p).to_owned(), json!(part_hash(&parts[*p])))).collect();
        let mut manifest = json!({"parts": hashes, "incident": "INC-00001", "exported_by": "t", "kid": key.id()});
        manifest["mac"] = json!(key.mac(manifest_message(&manifest).as_bytes()));
        json!({"format": FORMAT, "parts": parts, "manifest": manifest}).to_string()
    }

    #[test]
    fn the_chain_proof_catches_a_missing_link_and_a_foreign_key() {
        let key = AuditKey::from_bytes(&[3u8; 32]).expect("key");
        let good = bundle(&key, 5, &[2, 4], None);
        assert!(matches!(verify(&good, std::slice::from_ref(&key)), Verdict::Ok(_)));
        assert!(matches!(verify(&good, &[]), Verdict::Unproven(_)), "no key: unproven");
        // A record between the selected ones removed from the links (the hashes and MAC redone by
        // a key holder would be needed to hide it; here the manifest is honest about it).
        match verify(&bundle(&key, 5, &[2, 4], Some(3)), std::slice::from_ref(&key)) {
            Verdict::Tampered(why) => assert!(why.contains("audit chain"), "{why}"),
            v => panic!("{v:?}"),
        }
        // The exporter's name rewritten: the part hashes still match, the manifest's MAC does not.
        let renamed = good.replace("\"exported_by\":\"t\"", "\"exported_by\":\"u\"");
        assert_ne!(renamed, good);
        match verify(&renamed, std::slice::from_ref(&key)) {
            Verdict::Tampered(why) => assert!(why.contains("manifest: its MAC"), "{why}"),
            v => panic!("{v:?}"),
        }
    }
}
