//! `firebreak audit verify FILE`, `firebreak audit verify --postgres URL [--replica ID]`

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
    ///
    /// With --postgres: the records fleet mode shipped to `audit_records`, per replica, in seq order,
    /// against the head each replica last reported (`replicas.audit_head`).
    Verify {
        /// The audit trail (JSONL).
        #[arg(required_unless_present = "postgres")]
        file: Option<PathBuf>,
        /// Verify the shipped records in this PostgreSQL database instead of a file (fleet mode).
        #[arg(long, value_name = "URL", conflicts_with = "file")]
        postgres: Option<String>,
        /// With --postgres: only this replica (default: every replica with records).
        #[arg(long, value_name = "ID", requires = "postgres")]
        replica: Option<String>,
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
        Cmd::Verify { file: None, postgres: Some(url), replica, keys: key_args, allow_missing_head } => {
            let sources = keys(key_args, None)?;
            let keys = sources.iter().map(AuditKey::load).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
            verify_postgres(&url, replica.as_deref(), &VerifyOptions { keys, allow_missing_head })
        }
        Cmd::Verify { file, keys: key_args, allow_missing_head, .. } => {
            use crate::config::TokenSource;
            let file = file.context("give the audit trail FILE, or --postgres URL")?;
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

/// A runtime and a connection for the `--postgres` commands (the URL is never printed: it may
/// carry a password).
pub(crate) fn pg_connect(url: &str) -> anyhow::Result<(tokio::runtime::Runtime, tokio_postgres::Client)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let config: tokio_postgres::Config =
        url.parse().map_err(|_| anyhow::anyhow!("--postgres: not a PostgreSQL URL"))?;
    let (client, conn) = rt
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), config.connect(tokio_postgres::NoTls)).await
        })
        .map_err(|_| anyhow::anyhow!("--postgres: connecting timed out"))?
        .map_err(|e| anyhow::anyhow!("--postgres: cannot connect: {}", crate::fleet::db::db_error(&e)))?;
    rt.spawn(async move {
        let _ = conn.await;
    });
    Ok((rt, client))
}

/// Rows fetched per round trip when streaming `audit_records`.
pub(crate) const PAGE: i32 = 10_000;

/// Streams `query` (its first column: `seq`, its second: `line`) through a portal, `PAGE` rows per
/// fetch, as the lines `verify_lines` takes; the seq of the last line handed out is kept in `last`.
fn stream_lines<'a>(
    rt: &'a tokio::runtime::Runtime,
    tx: &'a tokio_postgres::Transaction<'a>,
    portal: &'a tokio_postgres::Portal,
    last: &'a std::cell::Cell<i64>,
) -> impl Iterator<Item = Result<String, String>> + 'a {
    let mut page: std::vec::IntoIter<tokio_postgres::Row> = Vec::new().into_iter();
    let mut done = false;
    std::iter::from_fn(move || loop {
        if let Some(row) = page.next() {
            last.set(row.get::<_, i64>(0));
            return Some(Ok(row.get::<_, String>(1)));
        }
        if done {
            return None;
        }
        match rt.block_on(tx.query_portal(portal, PAGE)) {
            Ok(rows) => {
                done = rows.len() < PAGE as usize;
                page = rows.into_iter();
            }
            Err(e) => {
                done = true;
                return Some(Err(format!("reading audit_records failed: {}", crate::fleet::db::db_error(&e))));
            }
        }
    })
}

/// `audit verify --postgres`: each replica's shipped records, in seq order, against its head.
fn verify_postgres(url: &str, only: Option<&str>, opts: &VerifyOptions) -> anyhow::Result<ExitCode> {
    use crate::audit::{verify_lines, HeadCheck, TrailHead};
    let db = |e: tokio_postgres::Error| anyhow::anyhow!("PostgreSQL: {}", crate::fleet::db::db_error(&e));
    let (rt, mut client) = pg_connect(url)?;
    let replicas: Vec<String> = match only {
        Some(r) => vec![r.to_owned()],
        None => rt
            .block_on(client.query("SELECT DISTINCT replica_id FROM audit_records ORDER BY 1", &[]))
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    if replicas.is_empty() {
        println!("audit_records holds no records");
        return Ok(ExitCode::from(2));
    }
    let mut worst = 0u8;
    for replica in &replicas {
        let shipped: Option<i64> = rt
            .block_on(client.query_one("SELECT max(seq) FROM audit_records WHERE replica_id = $1", &[replica]))
            .map_err(db)?
            .get(0);
        let head: Option<serde_json::Value> = rt
            .block_on(client.query_opt("SELECT audit_head FROM replicas WHERE replica_id = $1", &[replica]))
            .map_err(db)?
            .and_then(|r| r.get(0));
        let head = head.as_ref().and_then(serde_json::Value::as_object).and_then(TrailHead::from_json);
        let shipped = shipped.unwrap_or(0).max(0) as u64;
        if head.is_none() && !opts.allow_missing_head {
            println!(
                "replica {replica}: TAMPERED: no audit head in replicas.audit_head: records removed from the end cannot be ruled out (--allow-missing-head checks the rest)"
            );
            worst = worst.max(1);
            continue;
        }
        // A head ahead of the table: the end is not shipped yet, not cut off.
        let backlog = head.as_ref().map_or(0, |h| h.seq().saturating_sub(shipped));
        let head = head.filter(|_| backlog == 0);
        let last = std::cell::Cell::new(0i64);
        let tx = rt.block_on(client.transaction()).map_err(db)?;
        let portal = rt
            .block_on(tx.bind("SELECT seq, line FROM audit_records WHERE replica_id = $1 ORDER BY seq", &[replica]))
            .map_err(db)?;
        let mut count = 0usize;
        let lines = stream_lines(&rt, &tx, &portal, &last).inspect(|_| count += 1);
        let result = verify_lines(lines, head, opts);
        let _ = rt.block_on(tx.rollback());
        match result {
            Ok(r) => {
                let head_part = match (backlog, &r.head) {
                    (n @ 1.., _) => {
                        format!(", {n} records not yet shipped (backlog): the end is checked up to seq {shipped}")
                    }
                    (_, HeadCheck::Authenticated) => ", head authenticated".into(),
                    (_, HeadCheck::Unauthenticated) => ", head found but NOT authenticated".into(),
                    (_, HeadCheck::Missing) => ", NO head (truncation at the end cannot be detected)".into(),
                };
                if r.proven() {
                    println!("replica {replica}: OK, {}{head_part}", r.summary_records());
                } else {
                    println!(
                        "replica {replica}: UNPROVEN: the chain's structure is intact, but authenticity is not proven: {}{head_part}. Give the key (--key-file, --key-env or --policy)",
                        r.summary_records()
                    );
                    worst = worst.max(2);
                }
            }
            Err(crate::audit::VerifyError::Bad { line, reason }) if line <= count => {
                println!("replica {replica}: TAMPERED at seq {}: {reason}", last.get());
                worst = 1;
            }
            Err(e) => {
                println!("replica {replica}: TAMPERED: {e}");
                worst = 1;
            }
        }
    }
    Ok(ExitCode::from(worst))
}
