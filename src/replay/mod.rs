//! `firebreak replay`: remediation validation. Attack cases (suite files in TOML) run either offline,
//! in-process against a policy with the upstream's reply scripted in the case, or online against a
//! running gateway; the results become a Markdown report, JUnit XML and JSON.
//!
//! - [`suite`] — the case format: parsing and validation, every problem with file:line.
//! - [`build`] — a case's request and scripted reply in each API's wire format.
//! - [`offline`] — the in-process runner (the real pipeline, no sockets).
//! - [`online`] — the runner against `--target URL` (and an optional scripted upstream).
//! - [`expect`] — pass or fail, from the response and the request's audit records.
//! - [`report`] — Markdown, JUnit XML, JSON.
//! - [`from_audit`] — blocked payloads recorded in an audit trail → a new suite file.

pub mod build;
pub mod expect;
pub mod from_audit;
pub mod offline;
pub mod online;
pub mod report;
pub mod suite;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use expect::Observed;
use report::{CaseResult, Status};
use suite::{Case, KeyRef, Suite};

/// Why a runner could not be set up (nothing was run).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The scratch directory for offline state and audit.
    #[error("cannot create the scratch directory {0}: {1}")]
    Scratch(std::path::PathBuf, std::io::Error),
    /// The in-process gateway did not start.
    #[error(transparent)]
    Start(#[from] crate::gateway::StartError),
    /// `--target` is not a usable URL.
    #[error("--target `{0}`: {1}")]
    Target(String, String),
    /// The client's TLS configuration.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// `--scripted-upstream` cannot listen.
    #[error("--scripted-upstream {0}: cannot listen: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    /// A generated suite could not be serialised.
    #[error("cannot write the suite: {0}")]
    Serialize(String),
}

/// Virtual keys given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    /// `--key KEY`: for cases naming no principal.
    pub default: Option<String>,
    /// `--key ID=KEY`: for cases naming principal ID.
    pub by_principal: HashMap<String, String>,
}

impl Keys {
    /// The key a case sends: its own, then the command line's, then the suite's `[keys]`.
    fn for_case(&self, case: &Case, suite: &Suite) -> Result<String, String> {
        match &case.key {
            KeyRef::Raw(k) => Ok(k.clone()),
            KeyRef::Principal(p) => self.by_principal.get(p).or_else(|| suite.keys.get(p)).cloned().ok_or_else(|| {
                format!("no key for principal `{p}`: pass --key {p}=KEY or add it to the suite's [keys]")
            }),
            KeyRef::Default => {
                self.default.clone().ok_or_else(|| "the case names no principal and no --key was given".to_owned())
            }
        }
    }
}

/// Where cases run.
pub enum Runner {
    /// In-process.
    Offline(offline::Offline),
    /// Against a running gateway.
    Online(Box<online::Online>),
}

impl Runner {
    async fn run(&mut self, case: &Case, key: &str) -> Result<Observed, Outcome> {
        match self {
            Runner::Offline(o) => o.run(case, key).await.map_err(Outcome::Fail),
            Runner::Online(o) => o.run(case, key).await,
        }
    }
}

/// A case that did not produce an observation.
#[derive(Debug)]
pub enum Outcome {
    /// It fails with this reason.
    Fail(String),
    /// It is skipped with this reason.
    Skip(String),
}

/// Runs every case in order; a progress bar goes to stderr when stderr is a terminal.
pub async fn run(suite: &Suite, runner: &mut Runner, keys: &Keys) -> Vec<CaseResult> {
    let progress = std::io::stderr().is_terminal() && suite.cases.len() > 1;
    let mut out = Vec::with_capacity(suite.cases.len());
    let mut failed = 0;
    for (i, case) in suite.cases.iter().enumerate() {
        let start = Instant::now();
        let (status, reason) = match &case.skip {
            Some(why) => (Status::Skip, why.clone()),
            None => match keys.for_case(case, suite) {
                Err(e) => (Status::Fail, e),
                Ok(key) => match runner.run(case, &key).await {
                    Ok(obs) => match expect::check(&case.expect, &obs) {
                        Ok(r) => (Status::Pass, r),
                        Err(r) => (Status::Fail, r),
                    },
                    Err(Outcome::Fail(r)) => (Status::Fail, r),
                    Err(Outcome::Skip(r)) => (Status::Skip, r),
                },
            },
        };
        failed += usize::from(status == Status::Fail);
        out.push(CaseResult {
            id: case.id.clone(),
            category: case.category.clone(),
            description: case.description.clone(),
            file: case.file.clone(),
            line: case.line,
            status,
            reason,
            duration: start.elapsed(),
        });
        if progress && (i % 16 == 0 || i + 1 == suite.cases.len()) {
            bar(i + 1, suite.cases.len(), failed);
        }
    }
    if progress {
        eprint!("\r{:79}\r", "");
    }
    out
}

fn bar(done: usize, total: usize, failed: usize) {
    const W: usize = 40;
    let filled = done * W / total.max(1);
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r[{}{}] {done}/{total} cases, {failed} failed", "#".repeat(filled), " ".repeat(W - filled));
    let _ = e.flush();
}
