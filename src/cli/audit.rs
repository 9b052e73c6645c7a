//! `firebreak audit verify FILE`

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Check the hash chain; exit 1 and name the first bad line when anything was edited, removed,
    /// inserted, reordered or truncated.
    Verify {
        /// The audit trail (JSONL).
        file: PathBuf,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Cmd::Verify { file } => match crate::audit::verify(&file) {
            Ok(r) => {
                println!(
                    "{}: OK, {} record(s), chain intact{}",
                    file.display(),
                    r.records,
                    if r.head_checked { ", head matches" } else { " (no head file to compare)" }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{}: TAMPERED: {e}", file.display());
                Ok(ExitCode::from(1))
            }
        },
    }
}
