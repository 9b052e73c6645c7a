//! The results of a run, written three ways: the Markdown remediation-validation report (stdout),
//! JUnit XML (what CI systems render), and JSON. Reasons are already masked by the expectation
//! checker; nothing here prints a request or response body.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every expectation held.
    Pass,
    /// At least one did not, or the case could not run.
    Fail,
    /// Not run (the reason says why).
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Case id.
    pub id: String,
    /// Category.
    pub category: String,
    /// Description.
    pub description: String,
    /// Suite file.
    pub file: PathBuf,
    /// Line of the case.
    pub line: usize,
    /// Pass, fail or skip.
    pub status: Status,
    /// Why (masked).
    pub reason: String,
    /// How long it took.
    pub duration: Duration,
}

/// A whole run.
#[derive(Debug)]
pub struct Report {
    /// When it ran (RFC 3339).
    pub date: String,
    /// `offline against policies/example.toml` or `online against http://…`.
    pub mode: String,
    /// Results in suite order.
    pub results: Vec<CaseResult>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Report {
    fn count(&self, s: Status) -> usize {
        self.results.iter().filter(|r| r.status == s).count()
    }

    /// Whether every case ran and passed.
    pub fn verified(&self) -> bool {
        self.count(Status::Fail) == 0 && self.count(Status::Skip) == 0
    }

    /// Whether any case failed (exit status 1).
    pub fn failed(&self) -> bool {
        self.count(Status::Fail) > 0
    }

    fn rate(&self) -> f64 {
        let ran = self.results.len() - self.count(Status::Skip);
        ran as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let (pass, fail, skip) = (self.count(Status::Pass), self.count(Status::Fail), self.count(Status::Skip));
        let mut s = String::new();
        let _ = writeln!(s, "# firebreak remediation-validation report\n");
        let _ = writeln!(s, "- Date: {}", self.date);
        let _ = writeln!(s, "- Mode: {}", self.mode);
        let _ = writeln!(s, "- Cases: {}", self.results.len());
        let _ = writeln!(s, "- Passed: {pass}");
        let _ = writeln!(s, "- Failed: {fail}");
        if skip > 0 {
            let _ = writeln!(s, "- Skipped: {skip}");
        }
        let verdict = if self.verified() {
            "REMEDIATION VERIFIED".to_owned()
        } else if fail > 0 {
            format!("REMEDIATION INCOMPLETE: {fail} case(s) still get through")
        } else {
            format!("REMEDIATION INCOMPLETE: {skip} case(s) not run")
        };
        let _ = writeln!(s, "\n**{verdict}**\n");
        let _ = writeln!(s, "## Cases\n");
        for r in &self.results {
            let tag = match r.status {
                Status::Pass => "[PASS]",
                Status::Fail => "[FAIL]",
                Status::Skip => "[SKIP]",
            };
            let desc = one_line(&r.description);
            let sep = if desc.is_empty() { "" } else { " " };
            let _ = writeln!(s, "- {tag} `{}` ({}){sep}{desc}: {}", r.id, r.category, r.reason);
        }
        let _ = writeln!(
            s,
            "\n---\n{} case(s) in {:.3} s ({:.0} cases/s)",
            self.results.len(),
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        s
    }

    /// JUnit XML: one `<testsuite>` per suite file, one `<testcase>` per case.
    pub fn junit(&self) -> String {
        let mut files: Vec<&PathBuf> = Vec::new();
        for r in &self.results {
            if !files.contains(&&r.file) {
                files.push(&r.file);
            }
        }
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"firebreak replay\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
            self.results.len(),
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.elapsed.as_secs_f64(),
            xml(&self.date)
        );
        for f in files {
            let cases: Vec<&CaseResult> = self.results.iter().filter(|r| &r.file == f).collect();
            let n = |st: Status| cases.iter().filter(|r| r.status == st).count();
            let time: f64 = cases.iter().map(|r| r.duration.as_secs_f64()).sum();
            let _ = writeln!(
                s,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{time:.3}\">",
                xml(&f.display().to_string()),
                cases.len(),
                n(Status::Fail),
                n(Status::Skip)
            );
            for r in cases {
                let _ = write!(
                    s,
                    "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.6}\"",
                    xml(&r.category),
                    xml(&r.id),
                    xml(&r.file.display().to_string()),
                    r.line,
                    r.duration.as_secs_f64()
                );
                match r.status {
                    Status::Pass => s.push_str("/>\n"),
                    Status::Fail => {
                        let _ = writeln!(
                            s,
                            ">\n      <failure message=\"{}\" type=\"replay\">{}</failure>\n    </testcase>",
                            xml(&r.reason),
                            xml(&format!("{}\n{}:{}", r.reason, r.file.display(), r.line))
                        );
                    }
                    Status::Skip => {
                        let _ = writeln!(s, ">\n      <skipped message=\"{}\"/>\n    </testcase>", xml(&r.reason));
                    }
                }
            }
            s.push_str("  </testsuite>\n");
        }
        s.push_str("</testsuites>\n");
        s
    }

    /// The JSON report.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "date": self.date,
            "mode": self.mode,
            "verdict": if self.verified() { "REMEDIATION VERIFIED" } else { "REMEDIATION INCOMPLETE" },
            "totals": {
                "cases": self.results.len(),
                "passed": self.count(Status::Pass),
                "failed": self.count(Status::Fail),
                "skipped": self.count(Status::Skip),
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "cases_per_second": self.rate(),
            "cases": self.results.iter().map(|r| json!({
                "id": r.id,
                "category": r.category,
                "description": r.description,
                "file": r.file.display().to_string(),
                "line": r.line,
                "status": r.status.as_str(),
                "reason": r.reason,
                "duration_ms": r.duration.as_secs_f64() * 1000.0,
            })).collect::<Vec<_>>(),
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 cannot carry.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_everything_that_would_break_a_document() {
        assert_eq!(xml("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;?");
    }
}
