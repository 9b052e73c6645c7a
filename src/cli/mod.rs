//! The `firebreak` command line: one file per subcommand.

mod admin;
mod admin_tls;
mod alerts;
mod audit;
mod bundle;
mod check;
mod circuit;
mod eval_detection;
mod fleet;
mod key;
mod mcp;
mod replay;
mod report;
mod scan;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// firebreak — an inline, policy-enforcing reverse proxy for AI traffic.
#[derive(Debug, Parser)]
#[command(name = "firebreak", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (default: the embedded demo policy, no provider key needed).
    Serve(serve::Args),
    /// Validate policy files; report every problem with file, line and a hint.
    Check(check::Args),
    /// Talk to a running gateway's admin API (switches, state, reload, audit).
    Admin(admin::Args),
    /// Audit trail tools.
    Audit(audit::Args),
    /// Virtual keys.
    Key(key::Args),
    /// MCP servers: `mcp verify SERVER` lists a server's tools with their pin status and the
    /// description checks; exit 1 when any tool is not trusted.
    Mcp(mcp::Args),
    /// Replay attack suites against a policy (offline) or a running gateway; exit 1 when any case
    /// still gets through, 2 when the suite is broken.
    Replay(replay::Args),
    /// The incident report for a window, from the audit trail (Markdown, or JSON with --json).
    Report(report::Args),
    /// Detection quality of the injection signatures on labelled JSONL sets (precision, recall,
    /// false-positive rate per category, user input and tool results apart).
    EvalDetection(eval_detection::Args),
    /// Scan files and directories (logs) for credentials with the gateway's catalog; exit 1 on findings.
    Scan(scan::Args),
    /// Fleet mode's database: `fleet migrate` (the schema) and `fleet status` (schema, switch
    /// version, replicas).
    Fleet(fleet::Args),
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve::run(serve::Args::default()),
        Some(Command::Serve(a)) => serve::run(a),
        Some(Command::Check(a)) => check::run(a),
        Some(Command::Admin(a)) => admin::run(a),
        Some(Command::Audit(a)) => audit::run(a),
        Some(Command::Key(a)) => key::run(a),
        Some(Command::Mcp(a)) => mcp::run(a),
        Some(Command::Scan(a)) => scan::run(a),
        Some(Command::Replay(a)) => replay::run(a),
        Some(Command::Report(a)) => report::run(a),
        Some(Command::EvalDetection(a)) => eval_detection::run(a),
        Some(Command::Fleet(a)) => fleet::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firebreak: {e:#}");
            ExitCode::from(2)
        }
    }
}
