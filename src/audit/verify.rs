//! `firebreak audit verify`: finds the first edited, removed, inserted, reordered, forged or truncated
//! record, and says exactly how much it could prove.
//!
//! What a clean result proves, with the key(s): every record was written by a holder of the key
//! (its MAC matches; nobody without the key can edit a record, forge one, or extend the chain), no
//! record was removed, inserted or reordered (each MAC covers `seq` and `prev`, the previous
//! record's MAC), and the trail was not cut back before the record the head file names (the head
//! carries a MAC over that record's seq and MAC, so it cannot be rewritten to fit a shorter trail,
//! and a missing or unreadable head is an error unless `allow_missing_head`). Legacy unkeyed
//! records (written before keys existed) may only come first; the first keyed record's MAC covers
//! the last legacy hash, which pins the SHA-256 chain before it.
//!
//! What it cannot prove: anything against a holder of the key (they can rewrite the whole trail
//! and its head); a trail cut back to an earlier point together with an old copy of its head file
//! (both were genuine once); records written after the last head update (a crash between the two:
//! tolerated, and they still need valid MACs). Without a key only the structure is checked (chain,
//! seq, head position): anyone can recompute that, so the result is reported as unproven.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{head_path, record_hash, AuditKey, GENESIS};

/// What verification should use.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys by which records may be authenticated (the current one and any earlier ones).
    pub keys: Vec<AuditKey>,
    /// Accept a trail whose head file is missing or unreadable (truncation then goes undetected).
    pub allow_missing_head: bool,
}

/// A trail whose structure is intact; `proven()` says whether authenticity is proven too.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Legacy unkeyed records at the start.
    pub legacy: u64,
    /// Keyed records whose MAC was checked.
    pub authenticated: u64,
    /// Keyed records whose key was not given (structure only).
    pub unauthenticated: u64,
    /// Key ids in the order the trail uses them.
    pub key_ids: Vec<String>,
    /// Key ids the trail uses that were not given.
    pub missing_keys: Vec<String>,
    /// What was learnt from the head file.
    pub head: HeadCheck,
    /// The last record's MAC (or hash).
    pub last_mac: String,
}

/// The head file's part in the result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadCheck {
    /// Its MAC verifies and it names a record of the trail: no truncation before that record.
    Authenticated,
    /// It names a record of the trail, but its MAC could not be checked (no key, or a legacy head).
    Unauthenticated,
    /// Missing or unreadable, and allowed to be.
    Missing,
}

impl VerifyReport {
    /// Authenticity proven: at least one keyed record, every keyed record's MAC checked, and the
    /// head authenticated (or missing, when the caller allowed that).
    pub fn proven(&self) -> bool {
        self.authenticated > 0 && self.unauthenticated == 0 && self.head != HeadCheck::Unauthenticated
    }

    /// One line saying what was checked and what was not.
    pub fn summary(&self) -> String {
        let mut s = self.summary_records();
        s += match self.head {
            HeadCheck::Authenticated => ", head authenticated",
            HeadCheck::Unauthenticated => ", head found but NOT authenticated",
            HeadCheck::Missing => ", NO head file (truncation at the end cannot be detected)",
        };
        s
    }

    /// [`VerifyReport::summary`] without the head's part.
    pub fn summary_records(&self) -> String {
        let mut s = format!("{} record(s)", self.records);
        if self.authenticated > 0 {
            s += &format!(", {} authenticated with key id(s) {}", self.authenticated, self.key_ids.join(", "));
        }
        if self.legacy > 0 {
            s += &format!(
                ", {} legacy unkeyed record(s) first{}",
                self.legacy,
                if self.authenticated > 0 { " (pinned by the first keyed record)" } else { " (hash chain only)" }
            );
        }
        if self.unauthenticated > 0 {
            s += &format!(
                ", {} NOT authenticated (no key given for key id(s) {})",
                self.unauthenticated,
                self.missing_keys.join(", ")
            );
        }
        s
    }
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
    /// The head file is missing or unreadable.
    #[error("{0}")]
    Head(String),
}

/// A trail's head (the `.head` file, or `replicas.audit_head` in fleet mode), as written now
/// (`kid`, `mac`) or by earlier versions (`hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailHead {
    /// Seq, key id and a MAC over the seq and that record's MAC.
    Keyed {
        /// The last record's seq.
        seq: u64,
        /// The key id.
        kid: String,
        /// The head MAC.
        mac: String,
    },
    /// Seq and the record's hash (before keys existed).
    Legacy {
        /// The last record's seq.
        seq: u64,
        /// That record's hash.
        hash: String,
    },
}

impl TrailHead {
    /// Parses a head document (`{"seq":…,"kid":…,"mac":…}`); `None` when it is not one.
    pub fn parse(text: &str) -> Option<TrailHead> {
        let h: Map<String, Value> = serde_json::from_str(text.trim_end()).ok()?;
        TrailHead::from_json(&h)
    }

    /// [`TrailHead::parse`] of a JSON object already parsed.
    pub fn from_json(h: &Map<String, Value>) -> Option<TrailHead> {
        let s = |k: &str| h.get(k).and_then(Value::as_str).map(str::to_owned);
        let seq = h.get("seq").and_then(Value::as_u64);
        match (seq, s("kid"), s("mac"), s("hash")) {
            (Some(seq), Some(kid), Some(mac), _) => Some(TrailHead::Keyed { seq, kid, mac }),
            (Some(seq), None, None, Some(hash)) => Some(TrailHead::Legacy { seq, hash }),
            _ => None,
        }
    }

    /// The seq it names.
    pub fn seq(&self) -> u64 {
        match self {
            TrailHead::Keyed { seq, .. } | TrailHead::Legacy { seq, .. } => *seq,
        }
    }
}

fn read_head(path: &Path) -> Result<TrailHead, String> {
    let hp = head_path(path);
    let text = std::fs::read_to_string(&hp).map_err(|e| format!("cannot read the head file {}: {e}", hp.display()))?;
    TrailHead::parse(&text).ok_or_else(|| format!("the head file {} is not a head (garbled)", hp.display()))
}

/// Verifies the trail at `path` and its head file.
pub fn verify(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| VerifyError::Io { path: path.display().to_string(), source })?;
    let head = match read_head(path) {
        Ok(h) => Some(h),
        Err(_) if opts.allow_missing_head => None,
        Err(e) => {
            return Err(VerifyError::Head(format!(
                "{e}: records removed from the end cannot be ruled out (--allow-missing-head checks the rest)"
            )))
        }
    };
    let lines = text.split_inclusive('\n').map(|line| match line.strip_suffix('\n') {
        Some(body) => Ok(body.to_owned()),
        None => Err("the last record is cut off (no newline): the file was truncated".to_owned()),
    });
    verify_lines(lines, head, opts)
}

/// Verifies a trail given as its lines (without their newlines; an `Err` is reported as a bad
/// line with that reason) against its head (`None`: missing, which the caller has allowed). The
/// source may be a file ([`verify`]) or the `audit_records` table (`audit verify --postgres`);
/// errors name the 1-based position of the line in `lines`.
pub fn verify_lines(
    lines: impl IntoIterator<Item = Result<String, String>>,
    head: Option<TrailHead>,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let keys: BTreeMap<&str, &AuditKey> = opts.keys.iter().map(|k| (k.id(), k)).collect();
    let head_seq = head.as_ref().map(TrailHead::seq);
    let mut r = VerifyReport {
        records: 0,
        legacy: 0,
        authenticated: 0,
        unauthenticated: 0,
        key_ids: Vec::new(),
        missing_keys: Vec::new(),
        head: HeadCheck::Missing,
        last_mac: GENESIS.to_owned(),
    };
    // The key id the next keyed record must carry (None until the first keyed record).
    let mut expect_kid: Option<String> = None;
    let mut expect_seq: Option<u64> = None;
    let mut head_record_mac: Option<String> = None;
    let mut line_no = 0usize;
    for line in lines {
        line_no += 1;
        let bad = |reason: String| VerifyError::Bad { line: line_no, reason };
        let body = line.map_err(bad)?;
        let mut m: Map<String, Value> =
            serde_json::from_str(&body).map_err(|e| bad(format!("not a JSON record ({e}): edited or truncated")))?;
        let mac = match (m.remove("mac"), m.remove("hash")) {
            (Some(Value::String(mac)), None) => {
                let kid = m.get("kid").and_then(Value::as_str).ok_or_else(|| bad("keyed record has no kid".into()))?;
                if let Some(k) = &expect_kid {
                    if k != kid {
                        return Err(bad(format!(
                            "key id {kid} where {k} was expected, with no key_rotated record signed by {k}: forged"
                        )));
                    }
                }
                let canonical = serde_json::to_string(&m).unwrap_or_default();
                match keys.get(kid) {
                    Some(key) => {
                        if !key.verify(canonical.as_bytes(), &mac) {
                            return Err(bad(format!(
                                "the MAC does not match the record (key id {kid}): the record was edited, or forged by someone without the key"
                            )));
                        }
                        r.authenticated += 1;
                    }
                    None => {
                        r.unauthenticated += 1;
                        if !r.missing_keys.iter().any(|k| k == kid) {
                            r.missing_keys.push(kid.to_owned());
                        }
                    }
                }
                if !r.key_ids.iter().any(|k| k == kid) {
                    r.key_ids.push(kid.to_owned());
                }
                // A rotation (signed with the old key) names the key of every record after it.
                let rotated = m.get("kind").and_then(Value::as_str) == Some("audit")
                    && m.get("event").and_then(Value::as_str) == Some("key_rotated");
                expect_kid = match rotated {
                    true => Some(
                        m.get("new_kid")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("key_rotated record has no new_kid".into()))?
                            .to_owned(),
                    ),
                    false => Some(kid.to_owned()),
                };
                mac
            }
            (None, Some(Value::String(hash))) => {
                if expect_kid.is_some() {
                    return Err(bad(
                        "an unkeyed record after keyed ones: appended or inserted by someone without the key".into(),
                    ));
                }
                if record_hash(&m) != hash {
                    return Err(bad("hash does not match the record's content: the record was edited".into()));
                }
                r.legacy += 1;
                hash
            }
            _ => return Err(bad("record has no mac (nor a legacy hash): not a record of this trail".into())),
        };
        let seq = m.get("seq").and_then(Value::as_u64).ok_or_else(|| bad("record has no seq".into()))?;
        if m.get("prev").and_then(Value::as_str) != Some(r.last_mac.as_str()) {
            return Err(bad(format!(
                "prev does not match the previous record's MAC: a record before this one (seq {seq}) was removed, inserted or reordered"
            )));
        }
        if let Some(e) = expect_seq {
            if seq != e {
                return Err(bad(format!(
                    "seq {seq} where {e} was expected: records were removed, inserted or reordered"
                )));
            }
        }
        if head_seq == Some(seq) {
            head_record_mac = Some(mac.clone());
        }
        expect_seq = Some(seq + 1);
        r.last_mac = mac;
        r.records += 1;
    }
    let last_seq = expect_seq.map_or(0, |s| s - 1);
    let removed = |hseq: u64| {
        VerifyError::Bad {
        line: line_no + 1,
        reason: format!(
            "the head file says the trail has {hseq} records but it ends at {last_seq}: records were removed from the end"
        ),
    }
    };
    let rewritten = |hseq: u64| VerifyError::Bad {
        line: line_no + 1,
        reason: format!(
            "the head file does not match record seq {hseq}: the trail was rewritten, or the head file forged"
        ),
    };
    r.head = match head {
        None => HeadCheck::Missing,
        Some(TrailHead::Keyed { seq, kid, mac }) => {
            let Some(record_mac) = head_record_mac.or_else(|| (seq == 0).then(|| GENESIS.to_owned())) else {
                return Err(removed(seq));
            };
            match keys.get(kid.as_str()) {
                Some(key) if key.verify(super::key::head_message(seq, &record_mac).as_bytes(), &mac) => {
                    HeadCheck::Authenticated
                }
                Some(_) => return Err(rewritten(seq)),
                None => HeadCheck::Unauthenticated,
            }
        }
        Some(TrailHead::Legacy { seq, hash }) => match head_record_mac {
            None => return Err(removed(seq)),
            Some(h) if h != hash => return Err(rewritten(seq)),
            Some(_) => HeadCheck::Unauthenticated,
        },
    };
    Ok(r)
}
