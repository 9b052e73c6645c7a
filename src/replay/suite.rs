//! Suite files: TOML, parsed into validated [`Case`]s. Every problem carries `file:line` (the line of
//! the offending key, found with `toml_edit` spans as the policy loader does), and all problems of all
//! files are reported at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::build;
use crate::config::validate::{Located, PolicyFile, Problems, Seg};
use crate::http::script::ScriptedReply;
use crate::state::Action;

/// One suite file exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    /// Principal (key id) → raw virtual key, for demo and test keys only.
    #[serde(default)]
    keys: BTreeMap<String, String>,
    #[serde(default)]
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: String,
    description: Option<String>,
    category: Option<String>,
    principal: Option<String>,
    key: Option<String>,
    session: Option<String>,
    #[serde(default)]
    state: Vec<toml::Value>,
    request: Option<RawRequest>,
    reply: Option<RawReply>,
    expect: Option<RawExpect>,
    skip: Option<String>,
}

/// The request of a case; see the README for every field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    pub kind: String,
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub system: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<toml::Value>>,
    pub input: Option<toml::Value>,
    pub tools: Option<Vec<toml::Value>>,
    pub tool_result: Option<RawToolResult>,
    pub body: Option<toml::Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub server: Option<String>,
    pub method: Option<String>,
    pub params: Option<toml::Value>,
}

/// A tool call the model made and its result coming back (indirect injection lives there).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToolResult {
    pub tool: String,
    #[serde(default)]
    pub arguments: Option<String>,
    pub content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReply {
    pub status: Option<u16>,
    pub text: Option<String>,
    pub tool_call: Option<RawToolCall>,
    pub chunk_chars: Option<usize>,
    pub split_bytes: Option<usize>,
    pub json: Option<toml::Value>,
    pub sse: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToolCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    outcome: Option<String>,
    status: Option<u16>,
    #[serde(default)]
    not_contains: Vec<String>,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    rules: Vec<String>,
    incident: Option<String>,
}

/// What a case expects the gateway to do with the attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request, or something in it or in the response, was refused.
    Blocked,
    /// The response was delivered with something redacted or neutralised.
    Redacted,
    /// The request went through untouched (no block, no redaction): a false-positive check.
    Allowed,
}

impl Outcome {
    /// Its name in suite files.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Blocked => "blocked",
            Outcome::Redacted => "redacted",
            Outcome::Allowed => "allowed",
        }
    }
}

/// The expectations of a case; every one given must hold.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// blocked, redacted or allowed.
    pub outcome: Option<Outcome>,
    /// The HTTP status the client gets.
    pub status: Option<u16>,
    /// Indicators that must not reach the client (secrets: never printed).
    pub not_contains: Vec<String>,
    /// Text that must reach the client.
    pub contains: Vec<String>,
    /// Rule ids that must appear among the request's decisions.
    pub rules: Vec<String>,
    /// An incident of this severity (`SEV-1`…`SEV-4`) must be recorded.
    pub incident: Option<String>,
}

/// Which virtual key a case sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// The raw key, in the case.
    Raw(String),
    /// A principal (key id), resolved through `--key ID=KEY` or the suite's `[keys]`.
    Principal(String),
    /// The default key (`--key KEY`).
    Default,
}

/// The HTTP request of a case, ready to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// GET or POST.
    pub method: http::Method,
    /// Path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Extra headers (content type, accept, anthropic-version, the case's own).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: bytes::Bytes,
}

/// A validated case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique across the run.
    pub id: String,
    /// What the case attacks.
    pub description: String,
    /// Category (direct-injection, credential-leak, …).
    pub category: String,
    /// The file it came from.
    pub file: PathBuf,
    /// 1-based line of its `[[cases]]` header.
    pub line: usize,
    /// Whose key.
    pub key: KeyRef,
    /// `x-session-id`.
    pub session: Option<String>,
    /// Switches applied before the case (offline: reset afterwards).
    pub state: Vec<Action>,
    /// The request (absent only for skipped cases).
    pub request: Option<HttpRequest>,
    /// The endpoint's reply scripted in the case.
    pub reply: Option<ScriptedReply>,
    /// Expectations.
    pub expect: Expect,
    /// Why the case is not run (e.g. `--from-audit` without a stored payload).
    pub skip: Option<String>,
}

/// A loaded set of suite files.
#[derive(Debug, Default)]
pub struct Suite {
    /// Every case, in file order.
    pub cases: Vec<Case>,
    /// Principal → raw key, from the files' `[keys]` tables.
    pub keys: HashMap<String, String>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

/// A broken suite: every problem, located.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct SuiteError(pub Vec<Located>);

/// Loads suite files and directories (`*.toml`, recursively, in name order).
pub fn load(paths: &[PathBuf]) -> Result<Suite, SuiteError> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if let Err(e) = collect(p, &mut files) {
            errors.push(Located {
                file: p.display().to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
                hint: None,
            });
        }
    }
    let mut suite = Suite::default();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => parse_file(&f, &text, &mut suite, &mut seen, &mut errors),
            Err(e) => errors.push(Located {
                file: f.display().to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
                hint: None,
            }),
        }
        suite.files.push(f);
    }
    if suite.cases.is_empty() && errors.is_empty() {
        errors.push(Located {
            file: paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            line: 0,
            message: "no cases found".into(),
            hint: Some("a suite file holds [[cases]] tables; directories are searched for *.toml".into()),
        });
    }
    if errors.is_empty() {
        Ok(suite)
    } else {
        Err(SuiteError(errors))
    }
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if std::fs::metadata(p)?.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == "toml") {
                collect(&e, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Parses one file's text into `suite`, recording problems in `errors`.
pub fn parse_file(
    file: &Path,
    text: &str,
    suite: &mut Suite,
    seen: &mut HashMap<String, (PathBuf, usize)>,
    errors: &mut Vec<Located>,
) {
    let sources = [PolicyFile { path: file.to_path_buf(), text: text.to_owned() }];
    let raw: RawSuite = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            errors.push(Located {
                file: file.display().to_string(),
                line,
                message: e.message().to_owned(),
                hint: Some("see README.md, section \"Replay suites\", for the case format".into()),
            });
            return;
        }
    };
    let mut problems = Problems::default();
    let case_lines = case_lines(text);
    for (i, rc) in raw.cases.into_iter().enumerate() {
        let at = |rest: &[Seg]| {
            let mut p = vec![Seg::from("cases"), Seg::Index(i)];
            p.extend_from_slice(rest);
            p
        };
        let line = case_lines.get(i).copied().unwrap_or(0);
        if let Some((f, l)) = seen.get(&rc.id) {
            problems.add(
                0,
                at(&["id".into()]),
                format!("duplicate case id `{}` (first at {}:{l})", rc.id, f.display()),
                Some("case ids must be unique across the run".into()),
            );
            continue;
        }
        if let Some(case) = validate(rc, file, line, &at, &mut problems) {
            seen.insert(case.id.clone(), (file.to_path_buf(), line));
            suite.cases.push(case);
        }
    }
    suite.keys.extend(raw.keys);
    if !problems.is_empty() {
        errors.extend(problems.locate(&sources));
    }
}

/// The 1-based line of each `[[cases]]` table.
fn case_lines(text: &str) -> Vec<usize> {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else { return Vec::new() };
    let line = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    match doc.get("cases") {
        Some(toml_edit::Item::ArrayOfTables(a)) => a.iter().map(|t| t.span().map_or(0, |s| line(s.start))).collect(),
        _ => Vec::new(),
    }
}

fn validate(
    rc: RawCase,
    file: &Path,
    line: usize,
    at: &dyn Fn(&[Seg]) -> Vec<Seg>,
    problems: &mut Problems,
) -> Option<Case> {
    let before = problems_len(problems);
    if rc.id.trim().is_empty() || rc.id.len() > 128 || rc.id.chars().any(|c| c.is_whitespace()) {
        problems.add(0, at(&["id".into()]), "a case id must be 1-128 characters without spaces", None);
    }
    let key = match (rc.key, rc.principal) {
        (Some(_), Some(_)) => {
            problems.add(0, at(&["key".into()]), "give `key` or `principal`, not both", None);
            KeyRef::Default
        }
        (Some(k), None) => KeyRef::Raw(k),
        (None, Some(p)) => KeyRef::Principal(p),
        (None, None) => KeyRef::Default,
    };
    let mut state = Vec::new();
    for (j, a) in rc.state.into_iter().enumerate() {
        match serde_json::to_value(&a).and_then(serde_json::from_value::<Action>) {
            Ok(a) => state.push(a),
            Err(e) => problems.add(
                0,
                at(&["state".into(), j.into()]),
                format!("invalid switch action: {e}"),
                Some(
                    "actions are those of the admin API, e.g. { action = \"set_level\", level = \"lockdown\" }".into(),
                ),
            ),
        }
    }
    let skip = rc.skip;
    let request = match (rc.request, &skip) {
        (Some(r), _) => match build::request(&r, rc.session.as_deref()) {
            Ok(r) => Some(r),
            Err((k, m)) => {
                problems.add(0, at(&["request".into(), k.into()]), m, None);
                None
            }
        },
        (None, Some(_)) => None,
        (None, None) => {
            problems.add(0, at(&[]), "the case has no [cases.request]", None);
            None
        }
    };
    let reply = match (&rc.reply, &request) {
        (Some(r), Some((_, info))) => match build::reply(r, info) {
            Ok(r) => Some(r),
            Err((k, m)) => {
                problems.add(0, at(&["reply".into(), k.into()]), m, None);
                None
            }
        },
        _ => None,
    };
    let expect = rc.expect.unwrap_or_default();
    let outcome = match expect.outcome.as_deref() {
        None => None,
        Some("blocked") => Some(Outcome::Blocked),
        Some("redacted") => Some(Outcome::Redacted),
        Some("allowed") => Some(Outcome::Allowed),
        Some(o) => {
            problems.add(
                0,
                at(&["expect".into(), "outcome".into()]),
                format!("unknown outcome `{o}`"),
                Some("use blocked, redacted or allowed".into()),
            );
            None
        }
    };
    if let Some(s) = &expect.incident {
        let ok = s.strip_prefix("SEV-").is_some_and(|n| matches!(n, "1" | "2" | "3" | "4"));
        if !ok {
            problems.add(
                0,
                at(&["expect".into(), "incident".into()]),
                format!("unknown severity `{s}`; use SEV-1 … SEV-4"),
                None,
            );
        }
    }
    if expect.not_contains.iter().chain(&expect.contains).any(|s| s.is_empty()) {
        problems.add(0, at(&["expect".into()]), "`contains` / `not_contains` entries must not be empty", None);
    }
    let expect = Expect {
        outcome,
        status: expect.status,
        not_contains: expect.not_contains,
        contains: expect.contains,
        rules: expect.rules,
        incident: expect.incident,
    };
    let none = expect.outcome.is_none()
        && expect.status.is_none()
        && expect.not_contains.is_empty()
        && expect.contains.is_empty()
        && expect.rules.is_empty()
        && expect.incident.is_none();
    if none && skip.is_none() {
        problems.add(
            0,
            at(&[]),
            "the case expects nothing",
            Some("add [cases.expect] with outcome, status, not_contains, contains, rules or incident".into()),
        );
    }
    if problems_len(problems) > before {
        return None;
    }
    Some(Case {
        id: rc.id,
        description: rc.description.unwrap_or_default(),
        category: rc.category.unwrap_or_else(|| "uncategorised".into()),
        file: file.to_path_buf(),
        line,
        key,
        session: rc.session,
        state,
        request: request.map(|(r, _)| r),
        reply,
        expect,
        skip,
    })
}

fn problems_len(p: &Problems) -> usize {
    p.len()
}

/// A TOML value as JSON (datetimes become strings).
pub(super) fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
