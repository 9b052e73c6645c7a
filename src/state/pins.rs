//! Tool pins' identity: the canonical definition hash of an MCP tool (the rug-pull defence) and the
//! part of a definition a pin keeps for review. The MCP surface hashes what servers list; the
//! switch state checks an observed definition against its hash.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The fields of a tool definition that are hashed.
const DEFINITION_FIELDS: [&str; 6] = ["name", "title", "description", "inputSchema", "outputSchema", "annotations"];

/// Largest definition (canonical JSON, bytes) kept in a pin for review; a larger one is reviewed by
/// its hash alone.
pub const MAX_KEPT_DEFINITION: usize = 64 * 1024;

/// The hashed fields of a tool definition, as a JSON object (keys sorted): what its hash stands
/// for, and what an operator reviews before approving it.
pub fn canonical_definition(tool: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for f in DEFINITION_FIELDS {
        if let Some(v) = tool.get(f).filter(|v| !v.is_null()) {
            m.insert(f.to_owned(), v.clone());
        }
    }
    Value::Object(m)
}

/// SHA-256 (hex) of a tool definition as canonical JSON: the hashed fields only, object keys sorted
/// at every depth, no insignificant whitespace.
pub fn definition_hash(tool: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    let mut first = true;
    // DEFINITION_FIELDS sorted by key, so the top level is canonical too.
    let mut fields = DEFINITION_FIELDS;
    fields.sort_unstable();
    for f in fields {
        if let Some(v) = tool.get(f).filter(|v| !v.is_null()) {
            if !first {
                out.push(',');
            }
            first = false;
            canonical(&Value::String(f.to_owned()), &mut out);
            out.push(':');
            canonical(v, &mut out);
        }
    }
    out.push('}');
    hex::encode(Sha256::digest(out.as_bytes()))
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(&Value::String(k.clone()), out);
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
