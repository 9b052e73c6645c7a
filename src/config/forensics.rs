//! `[forensics]` (evidence capture around incidents) and `[listen] trusted_proxies`: raw → checked
//! settings, every problem collected with its key path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::compile::{path, positive, resolve_path};
use super::validate::{Problems, Seg};
use crate::inspect::egress::Cidr;

/// The default `before` and `after` windows (also the export window when capture is off).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// `[forensics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForensics {
    /// Off by default.
    pub enabled: Option<bool>,
    /// The evidence store (a directory; relative to the policy file).
    pub dir: Option<String>,
    /// How far back a principal's traffic is kept in memory for when an incident opens.
    pub before: Option<String>,
    /// How long after an incident opens the principal's traffic is written.
    pub after: Option<String>,
    /// Most exchanges kept per principal (the ring), and most written after an incident opens.
    pub max_entries: Option<i64>,
    /// Most bytes kept per principal (the ring), and most written after an incident opens.
    pub max_bytes: Option<i64>,
    /// Longest request or response payload kept (cut beyond, marked `truncated`).
    pub max_payload_bytes: Option<i64>,
    /// Memory for all rings together: it bounds the principals tracked at once.
    pub max_memory_bytes: Option<i64>,
}

/// Evidence capture, checked.
#[derive(Debug, Clone)]
pub struct ForensicsSettings {
    /// The evidence store.
    pub dir: PathBuf,
    /// The window kept before an incident opens.
    pub before: Duration,
    /// The window written after it opens.
    pub after: Duration,
    /// Most exchanges per principal and window.
    pub max_entries: usize,
    /// Most bytes per principal and window.
    pub max_bytes: usize,
    /// Longest payload kept.
    pub max_payload_bytes: usize,
    /// Memory for all rings.
    pub max_memory_bytes: usize,
}

impl ForensicsSettings {
    /// Principals tracked at once: the memory bound over each ring's bound.
    pub fn max_principals(&self) -> u64 {
        (self.max_memory_bytes / self.max_bytes.max(1)).max(1) as u64
    }
}

/// `None` when evidence capture is off (the default).
pub(super) fn compile(raw: Option<&RawForensics>, base: &Path, problems: &mut Problems) -> Option<ForensicsSettings> {
    let raw = raw?;
    let at = |k: &str| path(["forensics".into(), k.into()]);
    let mut dur = |v: &Option<String>, key: &str, default: u64| match v.as_deref().map(humantime::parse_duration) {
        None => Duration::from_secs(default),
        Some(Ok(d)) if !d.is_zero() => d,
        Some(_) => {
            problems.add(0, at(key), "is not a duration", Some("write it like \"15m\" or \"1h\"".into()));
            Duration::from_secs(default)
        }
    };
    let before = dur(&raw.before, "before", DEFAULT_WINDOW.as_secs());
    let after = dur(&raw.after, "after", DEFAULT_WINDOW.as_secs());
    let settings = ForensicsSettings {
        dir: resolve_path(base, raw.dir.as_deref().unwrap_or("firebreak-evidence")),
        before,
        after,
        max_entries: positive(raw.max_entries, 100, 0, at("max_entries"), problems) as usize,
        max_bytes: positive(raw.max_bytes, 1 << 20, 0, at("max_bytes"), problems) as usize,
        max_payload_bytes: positive(raw.max_payload_bytes, 64 << 10, 0, at("max_payload_bytes"), problems) as usize,
        max_memory_bytes: positive(raw.max_memory_bytes, 64 << 20, 0, at("max_memory_bytes"), problems) as usize,
    };
    if settings.max_memory_bytes < settings.max_bytes {
        problems.add(
            0,
            at("max_memory_bytes"),
            format!("is smaller than max_bytes ({}): not even one principal's window fits", settings.max_bytes),
            Some("raise max_memory_bytes (default 64 MiB) or lower max_bytes".into()),
        );
    }
    raw.enabled.unwrap_or(false).then_some(settings)
}

/// `[listen] trusted_proxies`: the CIDR blocks whose `X-Forwarded-For` / `Forwarded` are believed.
pub(super) fn trusted_proxies(raw: &[String], problems: &mut Problems) -> Vec<Cidr> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        match s.trim().parse::<Cidr>() {
            Ok(c) => out.push(c),
            Err(e) => problems.add(
                0,
                vec![Seg::from("listen"), Seg::from("trusted_proxies"), Seg::Index(i)],
                e,
                Some("name your load balancers' addresses, e.g. \"10.0.0.0/8\"".into()),
            ),
        }
    }
    out
}
