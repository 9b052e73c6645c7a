//! `POST /admin/v1/rotate/prompt/<id>` and `/rotate/canary/<id>`: emergency rotation of a managed
//! prompt (to its backup or fallback, with a new canary) or of its canary alone, as one switch
//! batch: atomic with the other switches, persisted, audited, and in force for the next request.
//! Neither the prompt text nor any canary appears in the response or the audit record: versions are
//! named by fingerprint and canary generation.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::identity::Identity;
use super::pending::{Approval, Held};
use super::{apply_error, error, json_response, rotation_meta, Admin};
use crate::audit::Record;
use crate::http::body::Body;
use crate::state::{Action, Batch};

/// What to rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rotate {
    /// The prompt (to its backup or fallback) and its canary.
    Prompt,
    /// The canary only.
    Canary,
}

impl Admin {
    pub(super) async fn rotate_prompt(
        &self,
        req: Request<Incoming>,
        id: String,
        what: Rotate,
        who: &Identity,
    ) -> Response<Body> {
        let (on_behalf_of, reason, expect_version) = match rotation_meta(req).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        if let Err(message) = self.gw.policy().managed_prompt(&id) {
            return error(StatusCode::NOT_FOUND, "unknown_prompt", &message);
        }
        let action = match what {
            Rotate::Prompt => Action::RotatePrompt { prompt: id.clone() },
            Rotate::Canary => Action::RotateCanary { prompt: id.clone() },
        };
        let batch = Batch { actions: vec![action], reason, actor: Some(who.id.clone()), expect_version };
        let on_behalf_of = on_behalf_of.filter(|a| *a != who.id);
        let held = Held::Rotation { prompt: id, what, batch };
        match self.hold_if_needed(held, who, on_behalf_of.as_deref()).await {
            Ok(Held::Rotation { prompt, what, batch }) => {
                self.apply_rotation(prompt, what, batch, on_behalf_of.as_deref(), None).await
            }
            Ok(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "held the wrong kind of request"),
            Err(answer) => answer,
        }
    }

    /// Applies a rotation batch (its `actor` is the identity that asked) and audits it.
    pub(super) async fn apply_rotation(
        &self,
        id: String,
        what: Rotate,
        batch: Batch,
        on_behalf_of: Option<&str>,
        approval: Option<Approval<'_>>,
    ) -> Response<Body> {
        let event = match what {
            Rotate::Prompt => "prompt",
            Rotate::Canary => "canary",
        };
        let actor = batch.actor.clone().unwrap_or_default();
        let reason = batch.reason.clone();
        let applied = match self.gw.apply(&batch).await {
            Ok(a) => a,
            Err(e) => return apply_error(e),
        };
        let rotation = applied.after.prompts.get(&id).and_then(|p| p.history.last()).cloned();
        let (old, new) = match &rotation {
            Some(r) => (json!(r.old), json!(r.new)),
            None => (json!(null), json!(null)),
        };
        let mut record = Record::new("rotation")
            .with("event", event)
            .with("prompt", id.as_str())
            .with("actor", actor.as_str())
            .with_opt("on_behalf_of", on_behalf_of)
            .with("reason", reason.as_str())
            .with("old", old.clone())
            .with("new", new.clone())
            .with("before_version", applied.before)
            .with("after_version", applied.after.version);
        if let Some(a) = approval {
            record = a.add_to(record);
        }
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
        tracing::warn!(actor = %actor, prompt = %id, event, version = applied.after.version, "managed prompt rotated");
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
