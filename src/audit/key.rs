//! The audit key: HMAC-SHA-256 over each record, so a record can be neither edited nor forged (nor
//! the chain extended) by someone who can write the file but does not hold the key.
//!
//! A key is at least 32 bytes, written as hex or base64 in an environment variable or a file
//! (`[audit] key_env` / `key_file`). Records carry its id (`kid`): the first 16 hex digits of
//! SHA-256 over a fixed label and the key — it names the key, it reveals nothing of it.

use std::path::{Path, PathBuf};

use crate::config::TokenSource;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// An HMAC-SHA-256 key with its id. `Debug` shows the id only.
#[derive(Clone)]
pub struct AuditKey {
    key: ring::hmac::Key,
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<AuditKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!("an audit key must be at least {MIN_KEY_BYTES} bytes; this one has {}", bytes.len()));
        }
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"firebreak audit key id\0");
        h.update(bytes);
        let id = hex::encode(&h.finalize()[..8]);
        Ok(AuditKey { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes), id })
    }

    /// A key written as hex (64+ digits) or base64 (standard or URL-safe, padding optional).
    pub fn parse(text: &str) -> Result<AuditKey, String> {
        use base64::Engine;
        let t = text.trim();
        let bytes = if t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|e| e.to_string())?
        } else {
            let cfg = base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent);
            let std = base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, cfg);
            let url = base64::engine::GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg);
            std.decode(t)
                .or_else(|_| url.decode(t))
                .map_err(|_| "an audit key must be hex or base64 (e.g. `openssl rand -hex 32`)".to_owned())?
        };
        AuditKey::from_bytes(&bytes)
    }

    /// Reads and parses the key from `source`.
    pub fn load(source: &TokenSource) -> Result<AuditKey, String> {
        let secret = source.read()?;
        AuditKey::parse(secret.expose()).map_err(|e| format!("audit key from {source}: {e}"))
    }

    /// The key id written into every record.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA-256 of `data`, hex.
    pub fn mac(&self, data: &[u8]) -> String {
        hex::encode(ring::hmac::sign(&self.key, data).as_ref())
    }

    /// Whether `mac_hex` is the MAC of `data` (compared in constant time).
    pub fn verify(&self, data: &[u8], mac_hex: &str) -> bool {
        match hex::decode(mac_hex) {
            Ok(tag) => ring::hmac::verify(&self.key, data, &tag).is_ok(),
            Err(_) => false,
        }
    }

    /// The MAC the head file carries for the record `seq` whose MAC is `record_mac`.
    pub fn head_mac(&self, seq: u64, record_mac: &str) -> String {
        self.mac(head_message(seq, record_mac).as_bytes())
    }
}

/// What a head MAC covers: a label (so a record MAC is never a valid head MAC), the seq and the MAC
/// of that record.
pub(crate) fn head_message(seq: u64, record_mac: &str) -> String {
    format!("firebreak audit head\n{seq}\n{record_mac}")
}

/// The key file used when the policy names none: `<audit file>.key`.
pub fn default_key_path(audit_file: &Path) -> PathBuf {
    let mut s = audit_file.as_os_str().to_owned();
    s.push(".key");
    s.into()
}

/// The key the gateway writes with: the configured one, else `<audit file>.key`, generated (32
/// random bytes, hex, `0600`) when it does not exist yet — so the demo needs no set-up. A
/// generated key beside the trail protects against nothing that can read that directory:
/// production policies set `key_env` or `key_file` (`firebreak check` warns).
pub fn writing_key(configured: Option<&TokenSource>, audit_file: &Path) -> Result<AuditKey, String> {
    if let Some(src) = configured {
        return AuditKey::load(src);
    }
    let path = default_key_path(audit_file);
    match std::fs::read_to_string(&path) {
        Ok(text) => AuditKey::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let bytes: [u8; 32] = rand::random();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create the audit key {}: {e}", path.display()))?;
            f.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write the audit key {}: {e}", path.display()))?;
            let key = AuditKey::from_bytes(&bytes)?;
            tracing::warn!(path = %path.display(), kid = key.id(), "no [audit] key_env or key_file: generated an audit key beside the trail (0600); in production keep the key where the trail's writers cannot read it");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read the audit key {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_or_base64_and_short_keys_are_refused() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = AuditKey::parse(hex_key).expect("hex");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_key).expect("hex"));
        let b = AuditKey::parse(&b64).expect("base64");
        assert_eq!(a.id(), b.id(), "the same key, however written");
        assert_eq!(a.id().len(), 16);
        assert!(!hex_key.contains(a.id()), "the id is not a piece of the key");
        assert!(AuditKey::parse("00112233").is_err(), "4 bytes");
        assert!(AuditKey::parse("not a key at all!").is_err());
        let mac = a.mac(b"record");
        assert!(a.verify(b"record", &mac));
        assert!(!a.verify(b"recorD", &mac));
        assert!(!a.verify(b"record", "zz"));
        let other = AuditKey::from_bytes(&[7u8; 32]).expect("key");
        assert!(!other.verify(b"record", &mac), "another key does not verify");
        assert_ne!(a.head_mac(1, &mac), a.mac(head_message(2, &mac).as_bytes()));
    }
}
