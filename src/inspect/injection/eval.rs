//! Detection quality on labelled sets: precision, recall and false-positive rate per category,
//! separately for user input and tool results, and enforced (block/strip) apart from flagged.
//!
//! A set is a directory of JSON Lines files (`*.jsonl`, top level only), one sample per line:
//! `{"text": "…", "label": "injection|extraction|jailbreak|benign|tricky_benign", "source":
//! "user|tool", "lang": "en", "tags": ["rot13"]}` (`lang` and `tags` optional). The harness never
//! prints a sample's text, only counts (and ids of signatures).

use std::collections::BTreeMap;
use std::path::Path;

use super::{HitAction, Signatures, TextOrigin};

/// The labels a sample may carry; the first three are attacks.
pub const LABELS: [&str; 5] = ["injection", "extraction", "jailbreak", "benign", "tricky_benign"];

/// One labelled sample.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The text, as a user message or a tool result.
    pub text: String,
    /// One of [`LABELS`].
    pub label: String,
    /// `user` or `tool`.
    pub source: String,
    /// Language code (informational).
    #[serde(default)]
    pub lang: String,
    /// Free-form tags (obfuscation, kind of tricky benign, …).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Sample {
    /// Whether the label names an attack.
    pub fn is_attack(&self) -> bool {
        matches!(self.label.as_str(), "injection" | "extraction" | "jailbreak")
    }

    /// The engine's source.
    pub fn source(&self) -> TextOrigin {
        if self.source == "tool" {
            TextOrigin::ToolResult
        } else {
            TextOrigin::UserInput
        }
    }
}

/// Reads every `*.jsonl` file at the top level of `dir` (sorted by name). Every malformed line is an
/// error naming its file and line.
pub fn load_dir(dir: &Path) -> Result<Vec<Sample>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no *.jsonl files", dir.display()));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Sample>(line) {
                Ok(s) if !LABELS.contains(&s.label.as_str()) => errors.push(format!(
                    "{}:{}: unknown label `{}` (one of {})",
                    f.display(),
                    i + 1,
                    s.label,
                    LABELS.join(", ")
                )),
                Ok(s) if s.source != "user" && s.source != "tool" => {
                    errors.push(format!("{}:{}: unknown source `{}` (user or tool)", f.display(), i + 1, s.source))
                }
                Ok(s) => out.push(s),
                Err(e) => errors.push(format!("{}:{}: {e}", f.display(), i + 1)),
            }
            if errors.len() >= 20 {
                break;
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// What a detector did with one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing hit.
    Pass,
    /// Hit, but only recorded.
    Flag,
    /// Hit and the matched spans were neutralised (the policy's action was strip).
    Strip,
    /// Hit and the request (or tool output) was refused.
    Block,
}

/// Stage 1: the signatures, with the policy's actions. `Strip` and `Block` both count as
/// enforced; a hit whose action is `Flag` (policy or flag-only signature) counts as flagged.
pub fn signatures_outcome(sigs: &Signatures, text: &str, source: TextOrigin) -> Outcome {
    match sigs.assess(text, source).action {
        None => Outcome::Pass,
        Some(HitAction::Flag) => Outcome::Flag,
        Some(HitAction::Strip) => Outcome::Strip,
        Some(HitAction::Block) => Outcome::Block,
    }
}

/// Both stages: the signatures and the classifier (when the policy enables it), the stronger
/// action taken ([`Signatures::verdict`]).
pub fn combined_outcome(sigs: &Signatures, text: &str, source: TextOrigin) -> Outcome {
    match sigs.verdict(text, source).action {
        None => Outcome::Pass,
        Some(HitAction::Flag) => Outcome::Flag,
        Some(HitAction::Strip) => Outcome::Strip,
        Some(HitAction::Block) => Outcome::Block,
    }
}

/// Counts for one (source, label) cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cell {
    /// Samples.
    pub n: usize,
    /// Enforced (blocked or stripped).
    pub enforced: usize,
    /// Of those, blocked.
    pub blocked: usize,
    /// Of those, stripped.
    pub stripped: usize,
    /// Flagged only.
    pub flagged: usize,
}

impl Cell {
    /// Share enforced.
    pub fn enforced_rate(&self) -> f64 {
        ratio(self.enforced, self.n)
    }
    /// Share detected at all (enforced or flagged).
    pub fn detected_rate(&self) -> f64 {
        ratio(self.enforced + self.flagged, self.n)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The figures for one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// `source → label → counts`.
    pub cells: BTreeMap<String, BTreeMap<String, Cell>>,
}

impl Report {
    /// The cell for a source (`user`, `tool`, or `all`) and label.
    pub fn cell(&self, source: &str, label: &str) -> Cell {
        self.cells.get(source).and_then(|m| m.get(label)).copied().unwrap_or_default()
    }

    /// Precision of enforcement for a source: attacks enforced / all enforced.
    pub fn precision(&self, source: &str) -> f64 {
        let Some(m) = self.cells.get(source) else { return 0.0 };
        let (mut tp, mut all) = (0, 0);
        for (label, c) in m {
            all += c.enforced;
            if matches!(label.as_str(), "injection" | "extraction" | "jailbreak") {
                tp += c.enforced;
            }
        }
        ratio(tp, all)
    }

    /// Precision per attack category for a source: enforced samples of that category over those
    /// plus every enforced benign sample of the source (the false alarms it competes with).
    pub fn category_precision(&self, source: &str, label: &str) -> f64 {
        let c = self.cell(source, label);
        let fp = self.cell(source, "benign").enforced + self.cell(source, "tricky_benign").enforced;
        ratio(c.enforced, c.enforced + fp)
    }
}

/// Runs `detect` over every sample.
pub fn evaluate(samples: &[Sample], detect: &dyn Fn(&str, TextOrigin) -> Outcome) -> Report {
    let mut r = Report::default();
    for s in samples {
        let o = detect(&s.text, s.source());
        for src in [s.source.as_str(), "all"] {
            let c = r.cells.entry(src.to_owned()).or_default().entry(s.label.clone()).or_default();
            c.n += 1;
            match o {
                Outcome::Pass => {}
                Outcome::Flag => c.flagged += 1,
                Outcome::Strip => {
                    c.enforced += 1;
                    c.stripped += 1;
                }
                Outcome::Block => {
                    c.enforced += 1;
                    c.blocked += 1;
                }
            }
        }
    }
    r
}

/// The report as a text table.
pub fn render(name: &str, r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "== {name}");
    let _ = writeln!(
        out,
        "{:<6} {:<14} {:>5} {:>7} {:>8} {:>7} {:>9} {:>10}",
        "source", "label", "n", "blocked", "stripped", "flagged", "enforced%", "detected%"
    );
    for src in ["user", "tool", "all"] {
        let Some(m) = r.cells.get(src) else { continue };
        for label in LABELS {
            let Some(c) = m.get(label) else { continue };
            let kind = if matches!(label, "benign" | "tricky_benign") { "fpr" } else { "recall" };
            let _ = writeln!(
                out,
                "{:<6} {:<14} {:>5} {:>7} {:>8} {:>7} {:>8.1}% {:>9.1}%  ({kind})",
                src,
                label,
                c.n,
                c.blocked,
                c.stripped,
                c.flagged,
                100.0 * c.enforced_rate(),
                100.0 * c.detected_rate()
            );
        }
        let _ = writeln!(out, "{src:<6} precision of enforcement: {:.1}%", 100.0 * r.precision(src));
    }
    out
}

/// The report as JSON: cells plus derived rates.
pub fn to_json(name: &str, r: &Report) -> serde_json::Value {
    let mut sources = serde_json::Map::new();
    for (src, m) in &r.cells {
        let mut labels = serde_json::Map::new();
        for (label, c) in m {
            let attack = matches!(label.as_str(), "injection" | "extraction" | "jailbreak");
            let mut v = serde_json::json!({
                "n": c.n, "enforced": c.enforced, "blocked": c.blocked, "stripped": c.stripped,
                "flagged": c.flagged,
            });
            if attack {
                v["recall_enforced"] = c.enforced_rate().into();
                v["recall_detected"] = c.detected_rate().into();
                v["precision_enforced"] = r.category_precision(src, label).into();
            } else {
                v["fpr_enforced"] = c.enforced_rate().into();
                v["fpr_blocked"] = ratio(c.blocked, c.n).into();
                v["fpr_detected"] = c.detected_rate().into();
            }
            labels.insert(label.clone(), v);
        }
        labels.insert("precision_enforced".into(), r.precision(src).into());
        sources.insert(src.clone(), serde_json::Value::Object(labels));
    }
    serde_json::json!({"stage": name, "sources": sources})
}
