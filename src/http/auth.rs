//! The identity phase, shared by the AI and MCP surfaces: the principal of a presented virtual key.

use std::sync::Arc;

use http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::GatewayError;
use crate::config::KeyEntry;

/// The presented virtual key, from `Authorization: Bearer` or `x-api-key`.
fn presented_key(h: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = h.get(header::AUTHORIZATION) {
        let b = v.as_bytes();
        if b.len() > 7 && b[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(b[7..].trim_ascii());
        }
    }
    h.get("x-api-key").map(|v| v.as_bytes().trim_ascii()).filter(|b| !b.is_empty())
}

/// Identity phase: the principal of the presented virtual key (Bearer or `x-api-key`).
pub fn authenticate(policy: &crate::config::Policy, h: &HeaderMap) -> Result<Arc<KeyEntry>, GatewayError> {
    use sha2::{Digest, Sha256};
    let key = presented_key(h).ok_or(GatewayError::MissingKey)?;
    let digest: [u8; 32] = Sha256::digest(key).into();
    // Keys are looked up by the SHA-256 of the secret, so timing reveals nothing about the secret
    // itself; the final comparison of the digests is constant-time all the same.
    let (stored, entry) = policy.keys.get_key_value(&digest).ok_or(GatewayError::UnknownKey)?;
    if !bool::from(stored.ct_eq(&digest)) {
        return Err(GatewayError::UnknownKey);
    }
    if entry.expires.is_some_and(|e| e <= std::time::SystemTime::now()) {
        return Err(GatewayError::KeyExpired(entry.id.clone()));
    }
    Ok(entry.clone())
}
