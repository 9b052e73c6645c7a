//! `firebreak audit verify FILE`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::{AuditKey, VerifyOptions};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Check the keyed chain and the head file. Exit 0: every record authenticated with the key(s)
    /// and nothing edited, removed, inserted, reordered, forged or cut from the end (up to the head).
    /// Exit 1: the first bad line is named. Exit 2: the structure is intact but authenticity is not
    /// proven (a key is missing, or only legacy unkeyed records). See README "Audit trail" for what
    /// this does and does not prove.
    Verify {
        /// The audit trail (JSONL).
        file: PathBuf,
        /// The audit keys (default: FILE.key when it exists, the key the gateway generates when
        /// the policy names none).
        #[command(flatten)]
        keys: KeyArgs,
        /// Accept a missing or unreadable head file (records removed from the end then go unnoticed).
        #[arg(long)]
        allow_missing_head: bool,
    },
    /// Check a forensic bundle (`admin incident ID --export FILE`) offline: every part against the
    /// manifest's SHA-256, the manifest's MAC, each audit record's MAC, the chain links and the
    /// head. Exit 0: OK. Exit 1: TAMPERED, naming the part that fails. Exit 2: consistent but not
    /// proven (no key given, or the trail was not proven at export).
    VerifyBundle {
        /// The bundle (JSON).
        file: PathBuf,
        /// The audit keys (with --policy, the default key file is the trail's FILE.key).
        #[command(flatten)]
        keys: KeyArgs,
    },
}

/// Where the audit keys come from: files, environment variables, a policy.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// A key file (hex or base64); repeat for the keys before a rotation.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
    /// An environment variable holding a key; repeatable.
    #[arg(long = "key-env")]
    key_envs: Vec<String>,
    /// Take the keys from this policy's [audit] key_* and previous_key_*.
    #[arg(long)]
    policy: Option<PathBuf>,
}

/// The keys named on the command line and in a policy (`audit_file` for the policy's default key).
fn keys(args: KeyArgs, audit_file: Option<&std::path::Path>) -> anyhow::Result<Vec<crate::config::TokenSource>> {
    use crate::config::TokenSource;
    let KeyArgs { key_files, key_envs, policy } = args;
    let mut sources: Vec<TokenSource> = key_files.into_iter().map(TokenSource::File).collect();
    sources.extend(key_envs.into_iter().map(TokenSource::Env));
    if let Some(p) = &policy {
        let p = crate::config::load(p).with_context(|| format!("loading {}", p.display()))?;
        let trail = audit_file.map_or_else(|| p.storage.audit_file.clone(), std::path::Path::to_path_buf);
        let default = TokenSource::File(crate::audit::default_key_path(&trail));
        sources.push(p.audit.key.clone().unwrap_or(default));
        sources.extend(p.audit.previous_key.clone());
    }
    Ok(sources)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Cmd::Verify { file, keys: key_args, allow_missing_head } => {
            use crate::config::TokenSource;
            let mut sources = keys(key_args, Some(&file))?;
            if sources.is_empty() {
                let beside = crate::audit::default_key_path(&file);
                if beside.exists() {
                    println!("using the key in {}", beside.display());
                    sources.push(TokenSource::File(beside));
                }
            }
            let keys = sources.iter().map(AuditKey::load).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
            match crate::audit::verify(&file, &VerifyOptions { keys, allow_missing_head }) {
                Ok(r) if r.proven() => {
                    println!("{}: OK, {}", file.display(), r.summary());
                    Ok(ExitCode::SUCCESS)
                }
                Ok(r) => {
                    println!(
                        "{}: UNPROVEN: the chain's structure is intact, but authenticity is not proven: {}. Anyone can recompute an unkeyed chain; give the key (--key-file, --key-env or --policy)",
                        file.display(),
                        r.summary()
                    );
                    Ok(ExitCode::from(2))
                }
                Err(e) => {
                    println!("{}: TAMPERED: {e}", file.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::VerifyBundle { file, keys: key_args } => {
            let sources = keys(key_args, None)?;
            let keys = sources.iter().map(AuditKey::load).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
            super::bundle::verify(&file, &keys)
        }
    }
}
