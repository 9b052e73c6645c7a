//! The switch state of managed prompts: which version is live, the canary in force and the retired
//! ones, the versions invalidated as compromised, and the rotation history.
//!
//! Canary values are secrets: they live in [`Canaries`], which the snapshot never serialises (the
//! admin API and the audit trail show generations and fingerprints only). The state file stores them
//! beside the snapshot (`persist`), so a restart keeps detecting every canary ever issued.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::prompts::{ManagedPrompt, PromptVersion};
use crate::config::Policy;

/// Rotation history entries kept per prompt (the audit trail keeps all of them).
const MAX_HISTORY: usize = 100;
/// Retired canaries kept (and detected) per prompt; beyond this the oldest is dropped.
pub const MAX_RETIRED: usize = 256;

/// The public state of one managed prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptState {
    /// The version injected now.
    pub live: PromptVersion,
    /// Fingerprint (SHA-256 prefix) of the live text when it went live.
    pub fingerprint: String,
    /// Generation of the canary in force (1 for the first; never the canary itself).
    pub canary_generation: u32,
    /// Fingerprints of texts rotated away as compromised: `restore_prompt` will not bring them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalidated: Vec<String>,
    /// Rotations, newest last.
    #[serde(default)]
    pub history: Vec<Rotation>,
}

/// One rotation, as the state and `GET /admin/v1/state` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// When (RFC 3339).
    pub time: String,
    /// `issue_canary`, `rotate_prompt`, `rotate_canary` or `restore_prompt`.
    pub kind: String,
    /// Version before (absent for the first canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<VersionRef>,
    /// Version after.
    pub new: VersionRef,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
}

/// Names a prompt version and canary without revealing either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    /// primary, backup or fallback.
    pub version: PromptVersion,
    /// SHA-256 prefix of its text.
    pub fingerprint: String,
    /// Canary generation.
    pub canary: u32,
}

/// The canary values of every managed prompt: the current one and the retired ones.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canaries(BTreeMap<String, PromptCanaries>);

/// One prompt's canaries.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptCanaries {
    /// In force: injected with the prompt.
    pub current: String,
    /// Retired: no longer injected, still detected.
    #[serde(default)]
    pub retired: Vec<String>,
}

impl fmt::Debug for Canaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Canaries(<{} prompts, redacted>)", self.0.len())
    }
}

impl Canaries {
    /// The canary injected with `prompt` now.
    pub fn current(&self, prompt: &str) -> Option<&str> {
        self.0.get(prompt).map(|c| c.current.as_str())
    }

    /// Every canary to detect: (prompt id, value), current and retired.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().flat_map(|(id, c)| {
            std::iter::once(c.current.as_str())
                .chain(c.retired.iter().map(String::as_str))
                .map(move |v| (id.as_str(), v))
        })
    }

    /// Whether no canary was ever issued.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `policy` with a scanner that also detects these canaries (every managed prompt's current and
    /// retired ones): the policy's own scanner extended, never rebuilt from the catalog.
    pub fn extend_scanner(&self, policy: &Policy) -> Result<Policy, String> {
        let mut rules = Vec::new();
        for (id, value) in self.all() {
            rules.extend(crate::inspect::canary::rules(id, value).map_err(|e| e.to_string())?);
        }
        let scanner = if rules.is_empty() {
            policy.base_scanner.clone()
        } else {
            Arc::new(policy.base_scanner.extended(rules).map_err(|e| e.to_string())?)
        };
        Ok(Policy { scanner, ..policy.clone() })
    }

    /// Issues a new canary for `prompt`, retiring the one in force.
    fn issue(&mut self, prompt: &str) {
        let next = crate::inspect::canary::generate();
        let e = self.0.entry(prompt.to_owned()).or_default();
        if !e.current.is_empty() {
            let old = std::mem::replace(&mut e.current, next);
            e.retired.push(old);
            if e.retired.len() > MAX_RETIRED {
                e.retired.remove(0);
            }
        } else {
            e.current = next;
        }
    }
}

/// What a prompt action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptChange {
    /// First canary (the gateway issues it when a prompt appears in the policy).
    Issue,
    /// Emergency rotation: to the backup, or the fallback; the old version is invalidated.
    RotatePrompt,
    /// A new canary only.
    RotateCanary,
    /// Back to the primary text (which must not be an invalidated one).
    Restore,
}

impl PromptChange {
    fn kind(self) -> &'static str {
        match self {
            PromptChange::Issue => "issue_canary",
            PromptChange::RotatePrompt => "rotate_prompt",
            PromptChange::RotateCanary => "rotate_canary",
            PromptChange::Restore => "restore_prompt",
        }
    }
}

/// Applies a prompt action to a snapshot copy.
pub(super) fn apply(
    s: &mut super::Snapshot,
    prompt: &ManagedPrompt,
    change: PromptChange,
    actor: &str,
    reason: &str,
    now: SystemTime,
) -> Result<(), String> {
    let id = prompt.id.as_str();
    let existing = s.prompts.get(id).cloned();
    if change == PromptChange::Issue && existing.is_some() && s.canaries.current(id).is_some() {
        // Issued already (a concurrent start-up or reload got there first): nothing to do.
        return Ok(());
    }
    let mut st = existing.clone().unwrap_or_else(|| PromptState {
        live: PromptVersion::Primary,
        fingerprint: prompt.primary.fingerprint.clone(),
        ..PromptState::default()
    });
    let old = existing.map(|e| VersionRef { version: e.live, fingerprint: e.fingerprint, canary: e.canary_generation });
    match change {
        PromptChange::Issue | PromptChange::RotateCanary => {}
        PromptChange::RotatePrompt => {
            let retired = prompt.text(st.live).fingerprint.clone();
            if !st.invalidated.contains(&retired) {
                st.invalidated.push(retired);
            }
            st.live = prompt.next_after(st.live);
        }
        PromptChange::Restore => {
            if st.invalidated.contains(&prompt.primary.fingerprint) {
                return Err(format!(
                    "the primary text of `{id}` is the version rotated away as compromised; write a new text \
                     in the policy, reload it, then restore"
                ));
            }
            st.live = PromptVersion::Primary;
        }
    }
    st.fingerprint = prompt.text(st.live).fingerprint.clone();
    st.canary_generation += 1;
    s.canaries.issue(id);
    st.history.push(Rotation {
        time: humantime::format_rfc3339_seconds(now).to_string(),
        kind: change.kind().to_owned(),
        old,
        new: VersionRef { version: st.live, fingerprint: st.fingerprint.clone(), canary: st.canary_generation },
        reason: reason.to_owned(),
        actor: actor.to_owned(),
    });
    if st.history.len() > MAX_HISTORY {
        st.history.remove(0);
    }
    s.prompts.insert(id.to_owned(), st);
    Ok(())
}
