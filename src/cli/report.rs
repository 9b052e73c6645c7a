//! `firebreak report --since 24h`: the incident report for a window, from the audit trail alone
//! (or, with `--postgres URL`, from the records every replica of a fleet shipped to `audit_records`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start of the window: a duration back from now (24h, 30m) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// The audit trail.
    #[arg(long, default_value = "firebreak-audit.jsonl")]
    audit: PathBuf,
    /// Read the fleet's shipped records from this PostgreSQL database instead of a file.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

/// The report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The audit file (`postgres:audit_records` with --postgres).
    pub audit_file: String,
    /// The replicas whose records the window holds (fleet mode, --postgres).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// Window start (RFC 3339).
    pub since: String,
    /// Whether the whole chain verified, and the problem if not.
    pub chain_verified: bool,
    /// What `audit verify` found.
    pub chain_detail: String,
    /// Records in the window.
    pub records: u64,
    /// Requests (AI and MCP) in the window.
    pub requests: u64,
    /// Incidents opened, by severity.
    pub incidents_by_severity: BTreeMap<String, u64>,
    /// Incidents opened in the window.
    pub incidents: Vec<Value>,
    /// Blocks by rule id.
    pub blocks_by_rule: BTreeMap<String, u64>,
    /// Redactions by rule id.
    pub redactions_by_rule: BTreeMap<String, u64>,
    /// Principals (tenant/user) with the most blocks and redactions.
    pub top_principals: Vec<(String, u64)>,
    /// Switch changes (containment), in order.
    pub containment: Vec<Value>,
    /// Credential rotations and rotation marks.
    pub rotations: Vec<Value>,
    /// Incidents, containment and rotations in time order.
    pub timeline: Vec<String>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Builds the report from the records of the window (oldest first).
pub fn build(records: &[Value]) -> Report {
    let mut r = Report { records: records.len() as u64, ..Report::default() };
    let mut principals: BTreeMap<String, u64> = BTreeMap::new();
    for v in records {
        let kind = s(v, "kind");
        let time = s(v, "time");
        let who = match (v.get("tenant").and_then(Value::as_str), v.get("user").and_then(Value::as_str)) {
            (Some(t), Some(u)) => Some(format!("{t}/{u}")),
            (None, Some(u)) => Some(u.to_owned()),
            _ => None,
        };
        let mut noteworthy = 0u64;
        match kind {
            "request" | "mcp" => {
                if matches!(s(v, "event"), "decision" | "request") {
                    r.requests += 1;
                }
                if let Some(Value::Array(ds)) = v.get("decisions") {
                    for d in ds {
                        if s(d, "action") == "block" {
                            *r.blocks_by_rule.entry(s(d, "rule").to_owned()).or_default() += 1;
                            noteworthy += 1;
                        }
                    }
                }
                if s(v, "event") == "tool_call_refused" {
                    *r.blocks_by_rule.entry(s(v, "rule").to_owned()).or_default() += 1;
                    noteworthy += 1;
                }
                if let Some(Value::Object(m)) = v.get("redactions") {
                    for (rule, n) in m {
                        let n = n.as_u64().unwrap_or(1);
                        *r.redactions_by_rule.entry(rule.clone()).or_default() += n;
                        noteworthy += n;
                    }
                }
            }
            "incident" => {
                let line = format!(
                    "{time} incident {} {} {} {} ({})",
                    s(v, "incident"),
                    s(v, "event"),
                    s(v, "severity"),
                    s(v, "trigger"),
                    who.as_deref().unwrap_or(s(v, "server"))
                );
                if s(v, "event") == "opened" {
                    *r.incidents_by_severity.entry(s(v, "severity").to_owned()).or_default() += 1;
                    r.incidents.push(v.clone());
                }
                if s(v, "event") != "joined" {
                    r.timeline.push(line);
                }
            }
            "switch" => {
                let actions: Vec<String> = v
                    .get("actions")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|x| s(x, "action").to_owned()).collect())
                    .unwrap_or_default();
                r.timeline.push(format!(
                    "{time} switch v{} by {}: {} — {}",
                    v.get("after_version").and_then(Value::as_u64).unwrap_or(0),
                    s(v, "actor"),
                    actions.join(", "),
                    s(v, "reason")
                ));
                r.containment.push(v.clone());
            }
            "rotation" => {
                let what = match v.get("prompt").and_then(Value::as_str) {
                    Some(p) => format!("{} of prompt {p}", s(v, "event")),
                    None => s(v, "event").to_owned(),
                };
                r.timeline.push(format!("{time} rotation {what} by {}: {}", s(v, "actor"), s(v, "reason")));
                r.rotations.push(v.clone());
            }
            _ => {}
        }
        if noteworthy > 0 {
            if let Some(w) = who {
                *principals.entry(w).or_default() += noteworthy;
            }
        }
    }
    let mut top: Vec<(String, u64)> = principals.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    r.top_principals = top;
    r
}

/// Markdown.
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# firebreak incident report\n");
    let _ = writeln!(o, "- Audit trail: `{}`", r.audit_file);
    if !r.replicas.is_empty() {
        let _ = writeln!(o, "- Replicas: {}", r.replicas.join(", "));
    }
    let _ = writeln!(o, "- Window: since {}", r.since);
    let _ = writeln!(
        o,
        "- Audit chain: {}",
        if r.chain_verified {
            format!("VERIFIED ({})", r.chain_detail)
        } else {
            format!("NOT VERIFIED: {}", r.chain_detail)
        }
    );
    let _ = writeln!(o, "- Records in window: {}; requests: {}\n", r.records, r.requests);
    let _ = writeln!(o, "## Incidents by severity\n");
    let _ = writeln!(o, "| severity | opened |\n|---|---|");
    for sev in ["SEV-1", "SEV-2", "SEV-3", "SEV-4"] {
        let _ = writeln!(o, "| {sev} | {} |", r.incidents_by_severity.get(sev).copied().unwrap_or(0));
    }
    let _ = writeln!(o, "\n## Incidents\n");
    if r.incidents.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(o, "| time | id | severity | trigger | principal | rule |\n|---|---|---|---|---|---|");
        for i in &r.incidents {
            let who = format!("{}/{}", s(i, "tenant"), s(i, "user"));
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                s(i, "time"),
                s(i, "incident"),
                s(i, "severity"),
                s(i, "trigger"),
                who,
                s(i, "rule")
            );
        }
    }
    let table = |o: &mut String, title: &str, m: &BTreeMap<String, u64>| {
        let _ = writeln!(o, "\n## {title}\n");
        if m.is_empty() {
            let _ = writeln!(o, "None.");
            return;
        }
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let _ = writeln!(o, "| rule | count |\n|---|---|");
        for (k, n) in v {
            let _ = writeln!(o, "| {k} | {n} |");
        }
    };
    table(&mut o, "Blocks by rule", &r.blocks_by_rule);
    table(&mut o, "Redactions by rule", &r.redactions_by_rule);
    let _ = writeln!(o, "\n## Top principals (blocks + redactions)\n");
    if r.top_principals.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(o, "| principal | events |\n|---|---|");
        for (p, n) in &r.top_principals {
            let _ = writeln!(o, "| {p} | {n} |");
        }
    }
    let _ = writeln!(o, "\n## Containment and rotation changes\n");
    let _ = writeln!(o, "{} switch change(s), {} rotation record(s).", r.containment.len(), r.rotations.len());
    let _ = writeln!(o, "\n## Timeline\n");
    if r.timeline.is_empty() {
        let _ = writeln!(o, "Nothing happened.");
    }
    for l in &r.timeline {
        let _ = writeln!(o, "- {l}");
    }
    o
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let since = crate::control::parse_since(&a.since)
        .with_context(|| format!("--since `{}`: write a duration (24h) or an RFC 3339 time", a.since))?;
    if let Some(url) = &a.postgres {
        let (records, replicas) = from_postgres(url, since)?;
        let mut r = build(&records);
        r.audit_file = "postgres:audit_records".into();
        r.replicas = replicas;
        r.since = humantime::format_rfc3339_seconds(since).to_string();
        r.chain_detail = "not checked by the report: run `firebreak audit verify --postgres URL`".into();
        return print(&r, a.json);
    }
    let records = crate::audit::read_since(&a.audit, Some(since), usize::MAX)
        .with_context(|| format!("reading {}", a.audit.display()))?;
    let mut r = build(&records);
    r.audit_file = a.audit.display().to_string();
    r.since = humantime::format_rfc3339_seconds(since).to_string();
    // With the key the gateway generates beside the trail, when there is one.
    let key = crate::audit::AuditKey::load(&crate::config::TokenSource::File(crate::audit::default_key_path(&a.audit)));
    let opts = crate::audit::VerifyOptions { keys: key.into_iter().collect(), allow_missing_head: false };
    match crate::audit::verify(&a.audit, &opts) {
        Ok(v) => {
            r.chain_verified = v.proven();
            r.chain_detail = v.summary();
        }
        Err(e) => r.chain_detail = e.to_string(),
    }
    print(&r, a.json)
}

fn print(r: &Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print!("{}", markdown(r));
    }
    Ok(ExitCode::SUCCESS)
}

/// The records of the window from `audit_records` (all replicas, in time order) and the replicas
/// they come from.
fn from_postgres(url: &str, since: std::time::SystemTime) -> anyhow::Result<(Vec<Value>, Vec<String>)> {
    let db = |e: tokio_postgres::Error| anyhow::anyhow!("PostgreSQL: {}", crate::fleet::db::db_error(&e));
    let (rt, mut client) = super::audit::pg_connect(url)?;
    let tx = rt.block_on(client.transaction()).map_err(db)?;
    let portal = rt
        .block_on(tx.bind(
            "SELECT replica_id, line FROM audit_records WHERE time >= $1 ORDER BY time, replica_id, seq",
            &[&since],
        ))
        .map_err(db)?;
    let mut records = Vec::new();
    let mut replicas = std::collections::BTreeSet::new();
    loop {
        let rows = rt.block_on(tx.query_portal(&portal, super::audit::PAGE)).map_err(db)?;
        for row in &rows {
            let replica: String = row.get(0);
            let line: &str = row.get(1);
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                records.push(v);
                if !replicas.contains(&replica) {
                    replicas.insert(replica);
                }
            }
        }
        if rows.len() < super::audit::PAGE as usize {
            break;
        }
    }
    let _ = rt.block_on(tx.rollback());
    Ok((records, replicas.into_iter().collect()))
}
