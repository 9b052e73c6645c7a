//! `firebreak audit verify`: finds the first edited, removed, inserted, reordered or truncated record.

use std::path::Path;

use serde_json::{Map, Value};

use super::{head_path, record_hash, GENESIS};

/// A verified trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// The last hash.
    pub last_hash: String,
    /// Whether a head file was present and matched.
    pub head_checked: bool,
}

/// The first problem found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A record does not verify.
    #[error("line {line}: {reason}")]
    Bad {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Verifies the chain of the trail at `path` (and its head file, when present).
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| VerifyError::Io { path: path.display().to_string(), source })?;
    // The head (if any) names a record that must be in the chain with exactly that hash; records after
    // it are tolerated (the writer may have died between appending and updating the head).
    let head: Option<(u64, String)> = std::fs::read_to_string(head_path(path))
        .ok()
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(&t).ok())
        .map(|h| {
            (
                h.get("seq").and_then(Value::as_u64).unwrap_or(0),
                h.get("hash").and_then(Value::as_str).unwrap_or("").to_owned(),
            )
        });
    let mut prev = GENESIS.to_owned();
    let mut expect_seq: Option<u64> = None;
    let mut records = 0u64;
    let mut line_no = 0usize;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        let bad = |reason: String| VerifyError::Bad { line: line_no, reason };
        let Some(body) = line.strip_suffix('\n') else {
            return Err(bad("the last record is cut off (no newline): the file was truncated".into()));
        };
        let mut m: Map<String, Value> =
            serde_json::from_str(body).map_err(|e| bad(format!("not a JSON record ({e}): edited or truncated")))?;
        let Some(Value::String(hash)) = m.remove("hash") else {
            return Err(bad("record has no hash".into()));
        };
        if record_hash(&m) != hash {
            return Err(bad("hash does not match the record's content: the record was edited".into()));
        }
        let seq = m.get("seq").and_then(Value::as_u64).ok_or_else(|| bad("record has no seq".into()))?;
        if m.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(bad(format!(
                "prev does not match the previous record's hash: a record before this one (seq {}) was removed, inserted or reordered",
                seq
            )));
        }
        if let Some(e) = expect_seq {
            if seq != e {
                return Err(bad(format!(
                    "seq {seq} where {e} was expected: records were removed, inserted or reordered"
                )));
            }
        }
        if let Some((hseq, hhash)) = &head {
            if seq == *hseq && hash != *hhash {
                return Err(bad(format!(
                    "record seq {seq} differs from the one the head file recorded: the trail was rewritten"
                )));
            }
        }
        expect_seq = Some(seq + 1);
        prev = hash;
        records += 1;
    }
    let mut head_checked = false;
    if let Some((hseq, _)) = head {
        let last_seq = expect_seq.map_or(0, |s| s - 1);
        if hseq > last_seq {
            return Err(VerifyError::Bad {
                line: line_no + 1,
                reason: format!("the head file says the trail has {hseq} records but it ends at {last_seq}: records were removed from the end"),
            });
        }
        head_checked = true;
    }
    Ok(VerifyReport { records, last_hash: prev, head_checked })
}
