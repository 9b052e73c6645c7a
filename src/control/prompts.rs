//! `POST /admin/v1/rotate/prompt/<id>` and `/rotate/canary/<id>`: emergency rotation of a managed
//! prompt (to its backup or fallback, with a new canary) or of its canary alone, as one switch
//! batch: atomic with the other switches, persisted, audited, and in force for the next request.
//! Neither the prompt text nor any canary appears in the response or the audit record: versions are
//! named by fingerprint and canary generation.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{apply_error, error, json_response, rotation_meta, Admin};
use crate::audit::Record;
use crate::proxy::body::Body;
use crate::state::{Action, Batch};

/// What to rotate.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rotate {
    /// The prompt (to its backup or fallback) and its canary.
    Prompt,
    /// The canary only.
    Canary,
}

impl Admin {
    pub(super) async fn rotate_prompt(&self, req: Request<Incoming>, id: String, what: Rotate) -> Response<Body> {
        let (actor, reason, expect_version) = match rotation_meta(req).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        if let Err(message) = self.gw.policy().managed_prompt(&id) {
            return error(StatusCode::NOT_FOUND, "unknown_prompt", &message);
        }
        let (action, event) = match what {
            Rotate::Prompt => (Action::RotatePrompt { prompt: id.clone() }, "prompt"),
            Rotate::Canary => (Action::RotateCanary { prompt: id.clone() }, "canary"),
        };
        let batch = Batch { actions: vec![action], reason: reason.clone(), actor: Some(actor.clone()), expect_version };
        let applied = match self.gw.apply(&batch).await {
            Ok(a) => a,
            Err(e) => return apply_error(e),
        };
        let rotation = applied.after.prompts.get(&id).and_then(|p| p.history.last()).cloned();
        let (old, new) = match &rotation {
            Some(r) => (json!(r.old), json!(r.new)),
            None => (json!(null), json!(null)),
        };
        let record = Record::new("rotation")
            .with("event", event)
            .with("prompt", id.as_str())
            .with("actor", actor.as_str())
            .with("reason", reason.as_str())
            .with("old", old.clone())
            .with("new", new.clone())
            .with("before_version", applied.before)
            .with("after_version", applied.after.version);
        let audit_seq = match self.gw.audit.record_durable(record).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = %e, "prompt rotated but its audit record could not be made durable; not acknowledged");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit_failed",
                    &format!("the rotation was applied (version {}) but its audit record could not be made durable ({e}); it is held and written when the disk recovers", applied.after.version),
                );
            }
        };
        tracing::warn!(actor, prompt = %id, event, version = applied.after.version, "managed prompt rotated");
        json_response(
            StatusCode::OK,
            &json!({
                "rotated": id,
                "event": event,
                "old": old,
                "new": new,
                "version": applied.after.version,
                "audit_seq": audit_seq,
            }),
        )
    }
}
