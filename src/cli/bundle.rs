//! Forensic bundles on the command line: `admin incident ID --export FILE` writes one,
//! `audit verify-bundle FILE` checks one offline.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::AuditKey;
use crate::forensics::bundle::{self, Verdict};

/// Writes an exported bundle to `file` (`0600`, replacing it) and says what it holds.
pub fn write(file: &Path, bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let v: serde_json::Value = serde_json::from_slice(bytes).context("the admin API did not answer with a bundle")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    // An existing file keeps its mode when truncated: the bundle is 0600 all the same.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|_| f.write_all(bytes))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "wrote {}: incident {}, {} audit record(s), evidence {}; manifest signed with key id {}",
        file.display(),
        v["manifest"]["incident"].as_str().unwrap_or("?"),
        v["parts"]["audit"]["records"].as_array().map_or(0, Vec::len),
        if v["parts"]["evidence"]["captured"] == serde_json::Value::Bool(true) { "captured" } else { "not captured" },
        v["manifest"]["kid"].as_str().unwrap_or("?"),
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit verify-bundle`: 0 OK, 1 TAMPERED (the failing part named), 2 UNPROVEN.
pub fn verify(file: &Path, keys: &[AuditKey]) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read(file) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
    };
    Ok(match bundle::verify(&text, keys) {
        Verdict::Ok(s) => {
            println!("{}: OK, {s}", file.display());
            ExitCode::SUCCESS
        }
        Verdict::Unproven(s) => {
            println!("{}: UNPROVEN: {s}. Give the audit key (--key-file, --key-env or --policy)", file.display());
            ExitCode::from(2)
        }
        Verdict::Tampered(s) => {
            println!("{}: TAMPERED: {s}", file.display());
            ExitCode::from(1)
        }
    })
}

/// A query-string value, percent-encoded.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
