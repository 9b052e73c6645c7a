//! `firebreak replay SUITE… (--policy FILE | --target URL)`: remediation validation.
//! Exit status: 0 when every case passed, 1 when any failed, 2 when the suite (or the policy) is broken.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::gateway::PolicySource;
use crate::replay::{self, report::Report, Keys, Runner};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suite files or directories (`*.toml`, searched recursively).
    #[arg(required_unless_present = "from_audit")]
    suites: Vec<PathBuf>,
    /// Offline mode: run every case in-process against this policy (no network).
    #[arg(long, conflicts_with = "target")]
    policy: Option<PathBuf>,
    /// Online mode: send the cases to the gateway at this URL.
    #[arg(long)]
    target: Option<String>,
    /// Virtual key: `KEY` for cases naming no principal, `ID=KEY` for cases naming principal ID.
    /// Repeatable. Default from $FIREBREAK_REPLAY_KEY.
    #[arg(long = "key", value_name = "[ID=]KEY")]
    keys: Vec<String>,
    /// Online mode: listen on ADDR as the target's upstream and answer with each case's scripted
    /// reply (the target's policy must route to http://ADDR). Without it, such cases are skipped.
    #[arg(long, requires = "target", value_name = "ADDR")]
    scripted_upstream: Option<SocketAddr>,
    /// Online mode: the target's audit trail, to judge outcomes from its decisions.
    #[arg(long, requires = "target", value_name = "FILE")]
    target_audit: Option<PathBuf>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write a JSON report here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Turn the blocked requests of this audit trail into a suite file (written to --out or stdout).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["policy", "target"])]
    from_audit: Option<PathBuf>,
    /// With --from-audit: only records since then (RFC 3339, or a duration back from now: 24h, 7d).
    #[arg(long, requires = "from_audit")]
    since: Option<String>,
    /// With --from-audit: the suite file to write.
    #[arg(long, requires = "from_audit", value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(audit) = &a.from_audit {
        return from_audit(audit, a.since.as_deref(), a.out.as_ref());
    }
    let suite = match replay::suite::load(&a.suites) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("firebreak replay: the suite is broken ({} problem(s)); nothing was run", e.0.len());
            return Ok(ExitCode::from(2));
        }
    };
    let keys = parse_keys(&a.keys)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let (mut runner, mode) = match (&a.policy, &a.target) {
        (Some(p), None) => {
            let policy = crate::config::load(p)?;
            (
                Runner::Offline(rt.block_on(replay::offline::Offline::new(policy, PolicySource::File(p.clone())))?),
                format!("offline against {}", p.display()),
            )
        }
        (None, Some(t)) => {
            let online = rt.block_on(replay::online::Online::new(t, a.target_audit.clone(), a.scripted_upstream))?;
            (Runner::Online(Box::new(online)), format!("online against {t}"))
        }
        _ => anyhow::bail!("give --policy FILE (offline) or --target URL (online)"),
    };
    let start = Instant::now();
    let results = rt.block_on(replay::run(&suite, &mut runner, &keys));
    let report = Report {
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        mode,
        results,
        elapsed: start.elapsed(),
    };
    drop(runner);
    print!("{}", report.markdown());
    if let Some(f) = &a.junit {
        std::fs::write(f, report.junit()).with_context(|| format!("writing {}", f.display()))?;
    }
    if let Some(f) = &a.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(f, text + "\n").with_context(|| format!("writing {}", f.display()))?;
    }
    Ok(if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn parse_keys(args: &[String]) -> anyhow::Result<Keys> {
    let mut keys =
        Keys { default: std::env::var("FIREBREAK_REPLAY_KEY").ok().filter(|k| !k.is_empty()), ..Keys::default() };
    for k in args {
        match k.split_once('=') {
            Some((id, key)) if !id.is_empty() && !key.is_empty() => {
                keys.by_principal.insert(id.to_owned(), key.to_owned());
            }
            Some(_) => anyhow::bail!("--key takes KEY or ID=KEY (the key itself is not shown)"),
            None => keys.default = Some(k.clone()),
        }
    }
    Ok(keys)
}

fn from_audit(path: &Path, since: Option<&str>, out: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let since = match since {
        Some(s) => Some(crate::control::parse_since(s).with_context(|| {
            format!("--since `{s}`: use RFC 3339 (2026-11-23T10:00:00Z) or a duration back from now (30m, 24h)")
        })?),
        None => None,
    };
    if !path.exists() {
        anyhow::bail!("audit trail {} does not exist", path.display());
    }
    let records =
        crate::audit::read_since(path, since, usize::MAX).with_context(|| format!("reading {}", path.display()))?;
    let c = replay::from_audit::convert(&records, &path.display().to_string(), since)?;
    match out {
        Some(f) => std::fs::write(f, &c.toml).with_context(|| format!("writing {}", f.display()))?,
        None => print!("{}", c.toml),
    }
    eprintln!(
        "{} blocked request(s): {} replayable, {} without a stored payload (marked skip)",
        c.replayable + c.without_payload,
        c.replayable,
        c.without_payload
    );
    Ok(ExitCode::SUCCESS)
}
