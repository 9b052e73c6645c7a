//! `[admin]` (the legacy token), `[audit]`, `[storage]`, `[telemetry]` and `[safe_mode]`.

use std::path::Path;

use super::{path, resolve_path};
use crate::config::raw::{RawAdmin, RawAudit, RawSafeMode, RawStorage, RawTelemetry};
use crate::config::validate::Problems;
use crate::config::{AuditSettings, OnAuditFailure, Storage, Telemetry, TokenSource};

/// Where the legacy admin token is read from.
pub(super) fn admin_token_source(raw: &RawAdmin, base: &Path, problems: &mut Problems) -> Option<TokenSource> {
    match (&raw.token_env, &raw.token_file) {
        (Some(_), Some(_)) => {
            problems.add(0, path(["admin".into()]), "set token_env or token_file, not both", None);
            None
        }
        (Some(e), None) => Some(TokenSource::Env(e.clone())),
        (None, Some(f)) => Some(TokenSource::File(resolve_path(base, f))),
        (None, None) => Some(TokenSource::Env("FIREBREAK_ADMIN_TOKEN".into())),
    }
}

/// `[audit]`.
pub(super) fn audit(raw: &RawAudit, base: &Path, problems: &mut Problems) -> AuditSettings {
    let on_failure = match raw.on_failure.as_deref() {
        None | Some("fail_closed") => OnAuditFailure::FailClosed,
        Some("fail_open") => OnAuditFailure::FailOpen,
        Some(other) => {
            problems.add(
                0,
                path(["audit".into(), "on_failure".into()]),
                format!("unknown value `{other}`"),
                Some("use \"fail_closed\" (refuse traffic while the trail cannot be written) or \"fail_open\"".into()),
            );
            OnAuditFailure::FailClosed
        }
    };
    let mut key_source = |env: &Option<String>, file: &Option<String>, name: &str| match (env, file) {
        (Some(_), Some(_)) => {
            problems.add(
                0,
                path(["audit".into(), format!("{name}_env").into()]),
                format!("set {name}_env or {name}_file, not both"),
                None,
            );
            None
        }
        (Some(e), None) => Some(TokenSource::Env(e.clone())),
        (None, Some(f)) => Some(TokenSource::File(resolve_path(base, f))),
        (None, None) => None,
    };
    let key = key_source(&raw.key_env, &raw.key_file, "key");
    let previous_key = key_source(&raw.previous_key_env, &raw.previous_key_file, "previous_key");
    AuditSettings { store_blocked_payloads: raw.store_blocked_payloads.unwrap_or(false), on_failure, key, previous_key }
}

/// `[storage]`: the state and audit files, relative to the policy's directory.
pub(super) fn storage(raw: &RawStorage, base: &Path) -> Storage {
    Storage {
        state_file: resolve_path(base, raw.state_file.as_deref().unwrap_or("firebreak-state.json")),
        audit_file: resolve_path(base, raw.audit_file.as_deref().unwrap_or("firebreak-audit.jsonl")),
    }
}

/// `[telemetry]`.
pub(super) fn telemetry(raw: &RawTelemetry, problems: &mut Problems) -> Telemetry {
    let json_logs = match raw.log_format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            problems.add(
                0,
                path(["telemetry".into(), "log_format".into()]),
                format!("unknown log format `{other}`"),
                Some("use \"text\" or \"json\"".into()),
            );
            false
        }
    };
    if let Some(ep) = &raw.otlp_endpoint {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            problems.add(
                0,
                path(["telemetry".into(), "otlp_endpoint".into()]),
                format!("`{ep}` is not an http(s) URL"),
                Some("e.g. http://127.0.0.1:4318 (OTLP over HTTP)".into()),
            );
        }
    }
    Telemetry {
        json_logs,
        log_level: raw.log_level.clone(),
        otlp_endpoint: raw.otlp_endpoint.clone(),
        service_name: raw.service_name.clone().unwrap_or_else(|| "firebreak".into()),
    }
}

/// `[safe_mode] reply`, or the built-in one.
pub(super) fn safe_mode_reply(raw: RawSafeMode) -> String {
    raw.reply.unwrap_or_else(|| {
        "This assistant is temporarily in safe mode. Your request was received but cannot be processed right now."
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{located, raw};
    use super::*;

    #[test]
    fn defaults() {
        let r = raw("");
        let mut p = Problems::default();
        let base = Path::new("/etc/fb");
        assert!(
            matches!(admin_token_source(&r.admin, base, &mut p), Some(TokenSource::Env(e)) if e == "FIREBREAK_ADMIN_TOKEN")
        );
        let a = audit(&r.audit, base, &mut p);
        assert!(!a.store_blocked_payloads && a.on_failure == OnAuditFailure::FailClosed);
        assert!(a.key.is_none() && a.previous_key.is_none());
        let s = storage(&r.storage, base);
        assert_eq!(s.state_file, base.join("firebreak-state.json"));
        assert_eq!(s.audit_file, base.join("firebreak-audit.jsonl"));
        let t = telemetry(&r.telemetry, &mut p);
        assert!(!t.json_logs && t.service_name == "firebreak");
        assert!(safe_mode_reply(r.safe_mode).starts_with("This assistant is temporarily in safe mode."));
        assert!(p.is_empty());
    }

    #[test]
    fn values_from_the_policy() {
        let text = "[admin]\ntoken_file = \"tok\"\n[audit]\non_failure = \"fail_open\"\nkey_env = \"K\"\nstore_blocked_payloads = true\n\
                    [telemetry]\nlog_format = \"json\"\n[safe_mode]\nreply = \"later\"\n";
        let r = raw(text);
        let mut p = Problems::default();
        let base = Path::new("/etc/fb");
        assert!(
            matches!(admin_token_source(&r.admin, base, &mut p), Some(TokenSource::File(f)) if f == base.join("tok"))
        );
        let a = audit(&r.audit, base, &mut p);
        assert!(a.store_blocked_payloads && a.on_failure == OnAuditFailure::FailOpen);
        assert!(matches!(a.key, Some(TokenSource::Env(e)) if e == "K"));
        assert!(telemetry(&r.telemetry, &mut p).json_logs);
        assert_eq!(safe_mode_reply(r.safe_mode), "later");
        assert!(p.is_empty());
    }

    #[test]
    fn bad_values_are_reported_at_their_keys() {
        let text = "[admin]\ntoken_env = \"A\"\ntoken_file = \"f\"\n\n[audit]\non_failure = \"shrug\"\nkey_env = \"K\"\nkey_file = \"k\"\n\n\
                    [telemetry]\nlog_format = \"xml\"\notlp_endpoint = \"grpc://x\"\n";
        let r = raw(text);
        let mut p = Problems::default();
        let base = Path::new(".");
        assert!(admin_token_source(&r.admin, base, &mut p).is_none());
        let a = audit(&r.audit, base, &mut p);
        assert!(a.on_failure == OnAuditFailure::FailClosed && a.key.is_none());
        assert!(!telemetry(&r.telemetry, &mut p).json_logs);
        let found: Vec<(usize, String)> = located(p, text).into_iter().map(|l| (l.line, l.message)).collect();
        assert_eq!(
            found,
            [
                (1, "set token_env or token_file, not both".to_owned()),
                (6, "unknown value `shrug`".to_owned()),
                (7, "set key_env or key_file, not both".to_owned()),
                (11, "unknown log format `xml`".to_owned()),
                (12, "`grpc://x` is not an http(s) URL".to_owned()),
            ]
        );
    }
}
