//! `firebreak fleet migrate|status`: the fleet's schema and replicas, straight from PostgreSQL
//! (`--policy FILE` for its `[fleet]` section, or `--postgres URL`). Also the table of
//! `firebreak admin fleet`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::config::fleet::{FleetSettings, UrlSource};
use crate::config::Secret;
use crate::fleet::db::{known_version, FleetDb};
use crate::fleet::replicas;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The policy whose `[fleet]` section names the database.
    #[arg(long, short, conflicts_with = "postgres")]
    policy: Option<PathBuf>,
    /// The PostgreSQL URL (instead of a policy; prefer --policy with postgres_url_env, since a
    /// password on the command line is visible to other users of the machine).
    #[arg(long)]
    postgres: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Bring the database schema to this binary's version (idempotent; safe while replicas run).
    Migrate {
        #[command(flatten)]
        target: Target,
    },
    /// The schema version, the switch version in the database, and every replica's heartbeat.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match a.cmd {
            Cmd::Migrate { target } => {
                let (db, _, _) = open(&target)?;
                let (before, after) = db.migrate_from("cli").await.context("migrating")?;
                if before == after {
                    println!("schema version {after}: up to date");
                } else {
                    println!("schema migrated from version {before} to {after}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Status { target, json } => {
                let (db, settings, own_hash) = open(&target)?;
                let schema = db.schema_version().await.context("reading the schema version")?;
                let (rows, version) = if schema > 0 {
                    let rows = replicas::list(&db, settings.live_after).await.context("reading the replicas")?;
                    (rows, replicas::db_version(&db).await.context("reading the switch version")?)
                } else {
                    (Vec::new(), 0)
                };
                let mut v = replicas::overview(version, &rows, &own_hash);
                v["schema_version"] = schema.into();
                v["binary_schema_version"] = known_version().into();
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    let note = match schema.cmp(&known_version()) {
                        std::cmp::Ordering::Equal => "",
                        std::cmp::Ordering::Less => "  ! older: run `firebreak fleet migrate`",
                        std::cmp::Ordering::Greater => "  ! newer: upgrade this binary",
                    };
                    println!("schema version {schema} (this binary: {}){note}", known_version());
                    println!("switch version in the database: {version}");
                    println!("{}", table(&v));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// The pool for `target`, its settings, and the policy's hash ("" with `--postgres`).
fn open(target: &Target) -> anyhow::Result<(FleetDb, Arc<FleetSettings>, String)> {
    let (settings, hash) = match (&target.policy, &target.postgres) {
        (Some(p), _) => {
            let policy = crate::config::load(p).with_context(|| format!("loading {}", p.display()))?;
            match &policy.fleet {
                Some(s) => (s.clone(), policy.content_sha256.clone()),
                None => bail!("{} has no [fleet] section (or it says enabled = false)", p.display()),
            }
        }
        (None, Some(url)) => {
            let mut problems = crate::config::validate::Problems::default();
            crate::config::fleet::check_postgres_url(url, true, &mut problems);
            if !problems.is_empty() {
                let why: Vec<String> = problems
                    .locate(&[])
                    .into_iter()
                    .map(|p| {
                        let what = p.message.trim_start_matches("[fleet] postgres_url ").to_owned();
                        format!("{what}{}", p.hint.map(|h| format!(" ({h})")).unwrap_or_default())
                    })
                    .collect();
                bail!("--postgres {}", why.join("; "));
            }
            (Arc::new(FleetSettings::for_postgres(UrlSource::Inline(Secret::new(url.as_str())))), String::new())
        }
        (None, None) => bail!("give --policy FILE (with a [fleet] section) or --postgres URL"),
    };
    let db = FleetDb::new(&settings, "cli").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((db, settings, hash))
}

/// The replica table of `fleet status` and `admin fleet`: one line per replica, `!` marking a
/// replica that lags the database's switch version, runs another policy than the majority, or is
/// not live.
pub(super) fn table(v: &Value) -> String {
    let list = v["replicas"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("no replica has reported yet");
    } else {
        let mut rows = vec![[
            " ".to_owned(),
            "REPLICA".into(),
            "ADDRESS".into(),
            "LIVE".into(),
            "LAST HEARTBEAT".into(),
            "APPLIED".into(),
            "LAG".into(),
            "POLICY".into(),
            "BACKLOG".into(),
            "REDIS".into(),
            "VERSION".into(),
        ]];
        for r in list {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
            let n = |k: &str| r[k].as_u64().map_or("-".to_owned(), |n| n.to_string());
            let live = r["live"] == Value::Bool(true);
            let lag = r["lag"].as_u64().unwrap_or(0);
            let mismatch = r["policy_mismatch"] == Value::Bool(true);
            let hash: String = s("policy_hash").chars().take(12).collect();
            let mark = if !live || lag > 0 || mismatch { "!" } else { " " };
            rows.push([
                mark.to_owned(),
                s("id"),
                s("address"),
                if live { "yes".into() } else { "NO".into() },
                s("last_heartbeat"),
                n("applied_version"),
                if lag > 0 { format!("{lag} behind") } else { "0".into() },
                if mismatch { format!("{hash} (differs)") } else { hash },
                n("shipper_backlog"),
                if r["redis_ok"] == Value::Bool(true) { "ok".into() } else { "down".into() },
                s("binary_version"),
            ]);
        }
        let widths: Vec<usize> =
            (0..11).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        for r in &rows {
            let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    }
    let live = v["live"].as_u64().unwrap_or(0);
    out.push_str(&format!("\n{live} of {} replicas live", list.len()));
    if v["mismatch"] == Value::Bool(true) {
        out.push_str("; ! the replicas run different policies (see policy_hashes in --json)");
    }
    if let Some(d) = v["degraded"].as_array().filter(|d| !d.is_empty()) {
        let d: Vec<&str> = d.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("\nthis replica is degraded: {}", d.join("; ")));
    }
    out
}
