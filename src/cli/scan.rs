//! `firebreak scan PATH…`: the credential-leak playbook's log sweep, with the gateway's own catalog.
//! Prints `file:line:column: rule (category, severity)` — never the secret.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::inspect::Scanner;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (scanned recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Use this policy's rules (custom rules, canaries, enabled/disabled built-ins) and the canaries
    /// of its managed prompts, current and retired, from its state file; default: the built-in catalog.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The state file to read managed-prompt canaries from (default: the policy's `[storage]`).
    #[arg(long, requires = "policy")]
    state_file: Option<PathBuf>,
    /// One JSON object per finding, then a summary object.
    #[arg(long)]
    json: bool,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_file_size: u64,
}

#[derive(Debug, serde::Serialize)]
struct Hit<'a> {
    file: String,
    line: usize,
    column: usize,
    rule: &'a str,
    category: &'a str,
    severity: crate::inspect::Severity,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let policy = match &a.policy {
        Some(p) => {
            let policy = crate::config::load(p)?;
            // Managed-prompt canaries live in the switch state, not the policy. A missing state file
            // means none were issued yet; an unreadable one is an error (the sweep would miss them).
            let state = crate::state::StateStore::open(a.state_file.as_ref().unwrap_or(&policy.storage.state_file))
                .with_context(|| "reading the managed-prompt canaries from the state file")?;
            let canaries = &state.load().canaries;
            if canaries.is_empty() {
                policy
            } else {
                canaries.extend_scanner(&policy).map_err(anyhow::Error::msg)?
            }
        }
        None => crate::config::load_str("<built-in catalog>", "", Path::new("."))
            .context("building the built-in catalog")?,
    };
    let scanner = &policy.scanner;
    let mut files = Vec::new();
    for p in &a.paths {
        collect(p, &mut files).with_context(|| format!("reading {}", p.display()))?;
    }
    let (mut findings, mut scanned, mut skipped) = (0usize, 0usize, 0usize);
    for f in &files {
        let Ok(meta) = std::fs::metadata(f) else { continue };
        if meta.len() > a.max_file_size {
            skipped += 1;
            continue;
        }
        let Ok(bytes) = std::fs::read(f) else {
            skipped += 1;
            continue;
        };
        if bytes[..bytes.len().min(8192)].contains(&0) {
            skipped += 1; // binary
            continue;
        }
        scanned += 1;
        let text = String::from_utf8_lossy(&bytes);
        findings += report(scanner, f, &text, a.json);
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"summary": {"files_scanned": scanned, "files_skipped": skipped, "findings": findings}})
        );
    } else {
        eprintln!("scanned {scanned} file(s), skipped {skipped}, {findings} finding(s)");
    }
    Ok(if findings > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(p)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)?.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
    } else if meta.is_file() {
        out.push(p.to_path_buf());
    }
    Ok(())
}

fn report(scanner: &Scanner, file: &Path, text: &str, json: bool) -> usize {
    let findings = scanner.scan(text);
    let mut line = 1;
    let mut line_start = 0;
    let mut at = 0;
    for f in &findings {
        // Advance the line counter to the finding.
        for (i, b) in text.as_bytes()[at..f.start].iter().enumerate() {
            if *b == b'\n' {
                line += 1;
                line_start = at + i + 1;
            }
        }
        at = f.start;
        let rule = scanner.rule(f.rule);
        let hit = Hit {
            file: file.display().to_string(),
            line,
            column: text[line_start..f.start].chars().count() + 1,
            rule: &rule.id,
            category: rule.category.as_str(),
            severity: rule.severity,
        };
        if json {
            println!("{}", serde_json::to_string(&hit).unwrap_or_default());
        } else {
            println!("{}:{}:{}: {} ({}, {:?})", hit.file, hit.line, hit.column, hit.rule, hit.category, hit.severity);
        }
    }
    findings.len()
}
