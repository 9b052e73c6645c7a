//! `GET /admin/v1/incidents/<id>/export`: the incident's forensic bundle (see
//! `forensics::bundle`), signed with the audit key. The export itself is audited
//! (`kind: forensics, event: exported`, with the exporter and the manifest's SHA-256), durably,
//! before the bundle is returned.

use http::{Response, StatusCode};

use super::identity::Identity;
use super::{error, json_response, Admin};
use crate::audit::Record;
use crate::http::body::Body;

impl Admin {
    pub(super) async fn export(&self, id: &str, query: Option<&str>, who: &Identity) -> Response<Body> {
        // The exporter is the authenticated identity; a name the request gives (`?actor=`) is only
        // who it was done for, as on every admin route.
        let actor = who.id.clone();
        let mut on_behalf_of: Option<String> = None;
        for (k, v) in super::console::form_pairs(query.unwrap_or("")) {
            match (k.as_str(), v) {
                ("actor", v) if !v.is_empty() => {
                    on_behalf_of = Some(v.chars().filter(|c| !c.is_control()).take(128).collect())
                }
                _ => return error(StatusCode::BAD_REQUEST, "unknown_parameter", "the only parameter is actor=NAME"),
            }
        }
        let Some(incident) = crate::gateway::incidents::get(&self.gw, id).await else {
            return error(StatusCode::NOT_FOUND, "unknown_incident", &format!("no incident `{id}`"));
        };
        let policy = self.gw.policy();
        let mut keys = Vec::new();
        match crate::audit::writing_key(policy.audit.key.as_ref(), &policy.storage.audit_file) {
            Ok(k) => keys.push(k),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "audit_key", &e),
        }
        if let Some(k) = policy.audit.previous_key.as_ref().and_then(|s| crate::audit::AuditKey::load(s).ok()) {
            keys.push(k);
        }
        // Everything captured and audited so far is on disk before it is read.
        self.gw.forensics.flush().await;
        if let Err(e) = self.gw.audit.flush().await {
            return error(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", &e.to_string());
        }
        let (before, after) = policy
            .forensics
            .as_deref()
            .map_or((crate::config::forensics::DEFAULT_WINDOW, crate::config::forensics::DEFAULT_WINDOW), |s| {
                (s.before, s.after)
            });
        let evidence_dir = self.gw.forensics.dir().map(std::path::Path::to_path_buf);
        let audit_file = policy.storage.audit_file.clone();
        let policy_sha256 = policy.sha256.clone();
        let switch_version = self.gw.state.load().version;
        let who = actor.clone();
        let built = tokio::task::spawn_blocking(move || {
            crate::forensics::bundle::build(&crate::forensics::bundle::Export {
                incident: &incident,
                actor: &who,
                audit_file: &audit_file,
                keys,
                evidence_dir: evidence_dir.as_deref(),
                before,
                after,
                policy_sha256: &policy_sha256,
                switch_version,
            })
        })
        .await;
        let bundle = match built {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "export_failed", &e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "export_failed", &e.to_string()),
        };
        let digest = crate::forensics::bundle::part_hash(&bundle["manifest"]);
        let record = Record::new("forensics")
            .with("event", "exported")
            .with("incident", id)
            .with("actor", actor.as_str())
            .with_opt("on_behalf_of", on_behalf_of.as_deref())
            .with("manifest_sha256", digest.as_str())
            .with("records", bundle["parts"]["audit"]["records"].as_array().map_or(0, Vec::len))
            .with("evidence", bundle["parts"]["evidence"]["captured"].clone());
        if let Err(e) = self.gw.audit.record_durable(record).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_failed",
                &format!("the export could not be audited ({e}); no bundle is handed out unaudited"),
            );
        }
        tracing::warn!(incident = id, actor, manifest = %digest, "forensic bundle exported");
        json_response(StatusCode::OK, &bundle)
    }
}

/// Whether a path is an export request: `/admin/v1/incidents/<id>/export` → the id.
pub(super) fn export_id(path: &str) -> Option<&str> {
    path.strip_prefix("/admin/v1/incidents/")?.strip_suffix("/export").filter(|id| !id.contains('/'))
}
