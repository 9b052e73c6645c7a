//! Raw policy → validated, compiled [`Policy`]. Every problem is collected, never just the first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw::{RawKey, RawPolicy, RawRoute, RawUpstream};
use super::validate::{Problems, Seg, Source};
use super::*;

/// Where a merged item came from: file index and its index (or key) in that file.
struct Origin {
    file: usize,
    index: usize,
}

struct Merged {
    main: RawPolicy,
    upstreams: BTreeMap<String, (usize, RawUpstream)>,
    roles: BTreeMap<String, (usize, super::raw::RawRole)>,
    tools: BTreeMap<String, (usize, super::raw::RawTool)>,
    tenants: BTreeMap<String, (usize, super::raw::RawTenant)>,
    keys: Vec<(Origin, RawKey)>,
    routes: Vec<(Origin, RawRoute)>,
}

pub(super) fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PolicyError(vec![Located {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read policy: {e}"),
            hint: Some("check the path and permissions".into()),
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(path.to_path_buf(), text, &base)
}

pub(super) fn load_text(name: PathBuf, text: String, base: &Path) -> Result<Policy, PolicyError> {
    let mut sources = vec![Source { path: name, text }];
    let mut problems = Problems::default();
    let policy = build(&mut sources, base, &mut problems);
    match policy {
        Some(mut p) if problems.is_empty() => {
            p.source = sources[0].path.clone();
            p.sha256 = sources_digest(&sources);
            Ok(p)
        }
        _ => Err(PolicyError(problems.locate(&sources))),
    }
}

/// SHA-256 over every file of a policy (path and text, in load order): the policy in force, named
/// in forensic bundles.
fn sources_digest(sources: &[Source]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in sources {
        h.update(s.path.display().to_string().as_bytes());
        h.update(b"\0");
        h.update(s.text.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

/// Parses one file. An unknown key is reported, blanked out (newlines kept, so every line number
/// stays the same) and parsing goes on, so one misspelt key does not hide the file's other problems.
/// Any other parse error stops at that error.
fn parse(file: usize, text: &str, problems: &mut Problems) -> Option<RawPolicy> {
    const MAX_UNKNOWN_KEYS: usize = 64;
    let mut current = std::borrow::Cow::Borrowed(text);
    let mut unknown = 0;
    loop {
        let e = match toml::from_str::<RawPolicy>(&current) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let line = e.span().map_or(0, |s| current[..s.start.min(current.len())].matches('\n').count() + 1);
        let msg = e.message().trim().to_owned();
        if msg.starts_with("unknown field") {
            problems.add_at_line(
                file,
                line,
                msg,
                Some("remove the key or fix its spelling; policies/example.toml documents every key".into()),
            );
            unknown += 1;
            match e.span().and_then(|s| without_key_at(&current, s.start)) {
                Some(next) if unknown < MAX_UNKNOWN_KEYS => {
                    current = std::borrow::Cow::Owned(next);
                    continue;
                }
                _ => return None,
            }
        }
        problems.add_at_line(file, line, msg, Some("fix the TOML syntax or the value's type".into()));
        return None;
    }
}

/// `text` with the key whose name starts at byte `at` (and its value, or its whole table) replaced
/// by spaces, newlines kept; `None` when that cannot be done cleanly (the caller then stops).
fn without_key_at(text: &str, at: usize) -> Option<String> {
    use toml_edit::{Item, TableLike, Value};
    fn leaf_ranges(item: &Item, out: &mut Vec<std::ops::Range<usize>>) -> Option<()> {
        match item {
            Item::Table(t) => {
                if t.is_dotted() {
                    return None;
                }
                // A header of its own, or an implicit parent of sub-tables only.
                if let Some(s) = t.span() {
                    out.push(s);
                }
                for (k, child) in t.iter() {
                    match child {
                        Item::Value(v) => out.push(t.key(k)?.span()?.start..v.span()?.end),
                        other => leaf_ranges(other, out)?,
                    }
                }
            }
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    leaf_ranges(&Item::Table(t.clone()), out)?;
                }
            }
            _ => return None,
        }
        Some(())
    }
    // A key-value inside an inline table takes one of its separating commas with it.
    fn with_comma(text: &[u8], r: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let blank = |b: &u8| *b == b' ' || *b == b'\t';
        let after = r.end + text.get(r.end..).map_or(0, |t| t.iter().take_while(|b| blank(b)).count());
        if text.get(after) == Some(&b',') {
            return r.start..after + 1;
        }
        let before = r.start - text[..r.start].iter().rev().take_while(|b| blank(b)).count();
        if before > 0 && text[before - 1] == b',' {
            return before - 1..r.end;
        }
        r
    }
    fn find(text: &[u8], t: &dyn TableLike, at: usize) -> Option<Vec<std::ops::Range<usize>>> {
        for (k, item) in t.iter() {
            let key = t.key(k)?;
            if key.span().is_some_and(|s| s.start == at) {
                let mut out = Vec::new();
                match item {
                    Item::Value(v) => out.push(with_comma(text, at..v.span()?.end)),
                    other => leaf_ranges(other, &mut out)?,
                }
                return Some(out);
            }
            let found = match item {
                Item::Table(t) => find(text, t, at),
                Item::ArrayOfTables(a) => a.iter().find_map(|t| find(text, t, at)),
                Item::Value(Value::InlineTable(t)) => find(text, t, at),
                Item::Value(Value::Array(a)) => a.iter().find_map(|v| match v {
                    Value::InlineTable(t) => find(text, t, at),
                    _ => None,
                }),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let ranges = find(text.as_bytes(), doc.as_table(), at)?;
    let mut bytes = text.as_bytes().to_vec();
    for r in ranges {
        for b in bytes.get_mut(r)? {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes inside whole items were replaced, but check: the result must still be TOML.
    let out = String::from_utf8(bytes).ok()?;
    toml_edit::ImDocument::parse(out.as_str()).ok()?;
    Some(out)
}

fn build(sources: &mut Vec<Source>, base: &Path, problems: &mut Problems) -> Option<Policy> {
    let main = parse(0, &sources[0].text, problems)?;
    let mut merged = Merged {
        upstreams: BTreeMap::new(),
        roles: BTreeMap::new(),
        tools: BTreeMap::new(),
        tenants: BTreeMap::new(),
        keys: Vec::new(),
        routes: Vec::new(),
        main: RawPolicy::default(),
    };
    let includes = main.include.clone();
    absorb(&mut merged, 0, main, problems);
    merged.main.include = includes.clone();
    for (i, inc) in includes.iter().enumerate() {
        let path = base.join(inc);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file = sources.len();
                sources.push(Source { path: path.clone(), text });
                if let Some(raw) = parse(file, &sources[file].text, problems) {
                    if !raw.include.is_empty() {
                        problems.add(
                            file,
                            vec!["include".into()],
                            "nested includes are not supported",
                            Some("include every file from the main policy".into()),
                        );
                    }
                    absorb(&mut merged, file, raw, problems);
                }
            }
            Err(e) => problems.add(
                0,
                vec!["include".into(), i.into()],
                format!("cannot read include {}: {e}", path.display()),
                Some("paths are relative to the main policy file".into()),
            ),
        }
    }
    compile(merged, base, problems)
}

/// Moves the mergeable sections of one file into `merged`; other sections only count in the main file.
fn absorb(m: &mut Merged, file: usize, mut raw: RawPolicy, problems: &mut Problems) {
    for (name, u) in std::mem::take(&mut raw.upstreams) {
        if m.upstreams.contains_key(&name) {
            problems.add(
                file,
                vec!["upstreams".into(), name.clone().into()],
                format!("upstream `{name}` is declared twice"),
                Some("rename one of them".into()),
            );
        }
        m.upstreams.insert(name, (file, u));
    }
    for (name, r) in std::mem::take(&mut raw.roles) {
        if m.roles.contains_key(&name) {
            problems.add(
                file,
                vec!["roles".into(), name.clone().into()],
                format!("role `{name}` is declared twice"),
                Some("rename one of them".into()),
            );
        }
        m.roles.insert(name, (file, r));
    }
    for (name, t) in std::mem::take(&mut raw.tools) {
        m.tools.insert(name, (file, t));
    }
    for (name, t) in std::mem::take(&mut raw.tenants) {
        if m.tenants.contains_key(&name) {
            problems.add(
                file,
                vec!["tenants".into(), name.clone().into()],
                format!("tenant `{name}` is declared twice"),
                Some("declare each tenant's identifiers in one place".into()),
            );
        }
        m.tenants.insert(name, (file, t));
    }
    for (index, k) in std::mem::take(&mut raw.keys).into_iter().enumerate() {
        m.keys.push((Origin { file, index }, k));
    }
    for (index, r) in std::mem::take(&mut raw.routes).into_iter().enumerate() {
        m.routes.push((Origin { file, index }, r));
    }
    if file == 0 {
        m.main = raw;
    } else {
        let sections = [
            (
                raw.listen.proxy.is_some()
                    || raw.listen.admin.is_some()
                    || raw.listen.proxy_tls.is_some()
                    || raw.listen.admin_tls.is_some()
                    || raw.listen.tls_watch_ms.is_some()
                    || raw.listen.trusted_proxies.is_some(),
                "listen",
            ),
            (
                raw.admin.token_env.is_some() || raw.admin.token_file.is_some() || raw.admin.require_second.is_some(),
                "admin",
            ),
            (!raw.admins.is_empty(), "admins"),
            (raw.forensics.is_some(), "forensics"),
            (raw.storage.state_file.is_some() || raw.storage.audit_file.is_some(), "storage"),
            (!raw.levels.is_empty(), "levels"),
            (raw.safe_mode.reply.is_some(), "safe_mode"),
            (
                raw.audit.store_blocked_payloads.is_some()
                    || raw.audit.on_failure.is_some()
                    || raw.audit.key_env.is_some()
                    || raw.audit.key_file.is_some()
                    || raw.audit.previous_key_env.is_some()
                    || raw.audit.previous_key_file.is_some(),
                "audit",
            ),
            (!raw.prompts.is_empty(), "prompts"),
            (raw.alerts.console_url.is_some() || !raw.alerts.sinks.is_empty(), "alerts"),
            (raw.circuit.is_some(), "circuit"),
        ];
        for (present, name) in sections {
            if present {
                problems.add(
                    file,
                    vec![name.into()],
                    format!("[{name}] is only read from the main policy file"),
                    Some("move it to the main file".into()),
                );
            }
        }
    }
}

/// Compiles the argument constraints of a tool; `at` is the tool's table.
pub(super) fn compile_args(
    raw: &BTreeMap<String, super::raw::RawArg>,
    file: usize,
    at: &[Seg],
    problems: &mut Problems,
) -> BTreeMap<String, ArgRule> {
    let mut args = BTreeMap::new();
    for (arg, a) in raw {
        let at = |k: &str| {
            let mut p = at.to_vec();
            p.extend(["args".into(), arg.clone().into(), k.into()]);
            p
        };
        let pattern = a.pattern.as_deref().and_then(|p| match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.add(
                    file,
                    at("pattern"),
                    format!("invalid pattern: {e}"),
                    Some("Rust regex syntax; it must match the whole value".into()),
                );
                None
            }
        });
        let max_len = a.max_len.map(|n| positive(Some(n), 1, file, at("max_len"), problems) as usize);
        args.insert(arg.clone(), ArgRule { values: a.values.clone(), pattern, max_len, required: a.required });
    }
    args
}

pub(super) fn path<const N: usize>(segs: [Seg; N]) -> Vec<Seg> {
    segs.into()
}

pub(super) fn positive(v: Option<i64>, default: u64, file: usize, at: Vec<Seg>, problems: &mut Problems) -> u64 {
    match v {
        None => default,
        Some(n) if n > 0 => n as u64,
        Some(n) => {
            problems.add(
                file,
                at,
                format!("must be a positive number, not {n}"),
                Some(format!("the default is {default}")),
            );
            default
        }
    }
}

/// A path from the policy, relative to the policy's directory unless absolute.
pub(super) fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn compile(m: Merged, base: &Path, problems: &mut Problems) -> Option<Policy> {
    let raw = m.main;
    let resolve = |p: &str| resolve_path(base, p);

    // Listeners.
    let addr = |v: &Option<String>, default: &str, key: &str, problems: &mut Problems| -> std::net::SocketAddr {
        let s = v.as_deref().unwrap_or(default);
        s.parse().unwrap_or_else(|_| {
            problems.add(
                0,
                path(["listen".into(), key.into()]),
                format!("`{s}` is not an address"),
                Some("write host:port with an IP, e.g. 127.0.0.1:8080".into()),
            );
            default.parse().unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        })
    };
    let listen = Listen {
        proxy: addr(&raw.listen.proxy, "127.0.0.1:8080", "proxy", problems),
        admin: addr(&raw.listen.admin, "127.0.0.1:9090", "admin", problems),
        trusted_proxies: super::forensics::trusted_proxies(
            raw.listen.trusted_proxies.as_deref().unwrap_or_default(),
            problems,
        ),
        proxy_tls: super::tls::compile(raw.listen.proxy_tls.as_ref(), "proxy_tls", base, problems),
        admin_tls: super::tls::compile(raw.listen.admin_tls.as_ref(), "admin_tls", base, problems),
        tls_watch: super::tls::watch_interval(raw.listen.tls_watch_ms, problems),
    };

    let admin_token_source = match (&raw.admin.token_env, &raw.admin.token_file) {
        (Some(_), Some(_)) => {
            problems.add(0, path(["admin".into()]), "set token_env or token_file, not both", None);
            None
        }
        (Some(e), None) => Some(TokenSource::Env(e.clone())),
        (None, Some(f)) => Some(TokenSource::File(resolve(f))),
        (None, None) => Some(TokenSource::Env("FIREBREAK_ADMIN_TOKEN".into())),
    };

    let on_failure = match raw.audit.on_failure.as_deref() {
        None | Some("fail_closed") => OnAuditFailure::FailClosed,
        Some("fail_open") => OnAuditFailure::FailOpen,
        Some(other) => {
            problems.add(
                0,
                path(["audit".into(), "on_failure".into()]),
                format!("unknown value `{other}`"),
                Some("use \"fail_closed\" (refuse traffic while the trail cannot be written) or \"fail_open\"".into()),
            );
            OnAuditFailure::FailClosed
        }
    };
    let mut key_source = |env: &Option<String>, file: &Option<String>, name: &str| match (env, file) {
        (Some(_), Some(_)) => {
            problems.add(
                0,
                path(["audit".into(), format!("{name}_env").into()]),
                format!("set {name}_env or {name}_file, not both"),
                None,
            );
            None
        }
        (Some(e), None) => Some(TokenSource::Env(e.clone())),
        (None, Some(f)) => Some(TokenSource::File(resolve(f))),
        (None, None) => None,
    };
    let audit_key = key_source(&raw.audit.key_env, &raw.audit.key_file, "key");
    let previous_audit_key = key_source(&raw.audit.previous_key_env, &raw.audit.previous_key_file, "previous_key");
    let storage = Storage {
        state_file: resolve(raw.storage.state_file.as_deref().unwrap_or("firebreak-state.json")),
        audit_file: resolve(raw.storage.audit_file.as_deref().unwrap_or("firebreak-audit.jsonl")),
    };

    let d = Limits::default();
    let l = &raw.limits;
    let lim = |k: &str| path(["limits".into(), k.into()]);
    let ms = Duration::from_millis;
    // Every limit is a positive number named as in `[limits]`; a `_ms` one is a duration.
    macro_rules! num {
        ($key:ident, $default:expr) => {
            positive(l.$key, $default as u64, 0, lim(stringify!($key)), problems)
        };
    }
    macro_rules! dur {
        ($key:ident, $default:expr) => {
            ms(num!($key, $default.as_millis()))
        };
    }
    let limits = Limits {
        max_request_body: num!(max_request_body_bytes, d.max_request_body) as usize,
        max_response_body: num!(max_response_body_bytes, d.max_response_body) as usize,
        header_read_timeout: dur!(header_read_timeout_ms, d.header_read_timeout),
        upstream_connect_timeout: dur!(upstream_connect_timeout_ms, d.upstream_connect_timeout),
        upstream_timeout: dur!(upstream_timeout_ms, d.upstream_timeout),
        stream_idle_timeout: dur!(stream_idle_timeout_ms, d.stream_idle_timeout),
        shutdown_drain: dur!(shutdown_drain_ms, d.shutdown_drain),
        max_concurrent_requests: num!(max_concurrent_requests, d.max_concurrent_requests) as usize,
        first_byte_timeout: dur!(first_byte_timeout_ms, d.first_byte_timeout),
        idle_timeout: dur!(idle_timeout_ms, d.idle_timeout),
        h2_keep_alive_interval: dur!(h2_keep_alive_interval_ms, d.h2_keep_alive_interval),
        h2_keep_alive_timeout: dur!(h2_keep_alive_timeout_ms, d.h2_keep_alive_timeout),
        h2_max_concurrent_streams: num!(h2_max_concurrent_streams, d.h2_max_concurrent_streams).min(u32::MAX.into())
            as u32,
        max_connections: num!(max_connections, d.max_connections) as usize,
        admin_max_connections: num!(admin_max_connections, d.admin_max_connections) as usize,
        request_body_timeout: dur!(request_body_timeout_ms, d.request_body_timeout),
        min_request_body_rate: num!(min_request_body_bytes_per_sec, d.min_request_body_rate),
        max_buffered_request_bytes: num!(max_buffered_request_bytes, d.max_buffered_request_bytes) as usize,
    };
    if limits.max_buffered_request_bytes < limits.max_request_body {
        problems.add(
            0,
            lim("max_buffered_request_bytes"),
            format!(
                "is smaller than max_request_body_bytes ({}): no body of the largest allowed size could ever be read",
                limits.max_request_body
            ),
            Some("raise max_buffered_request_bytes (default 256 MiB) or lower max_request_body_bytes".into()),
        );
    }

    let json_logs = match raw.telemetry.log_format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            problems.add(
                0,
                path(["telemetry".into(), "log_format".into()]),
                format!("unknown log format `{other}`"),
                Some("use \"text\" or \"json\"".into()),
            );
            false
        }
    };
    if let Some(ep) = &raw.telemetry.otlp_endpoint {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            problems.add(
                0,
                path(["telemetry".into(), "otlp_endpoint".into()]),
                format!("`{ep}` is not an http(s) URL"),
                Some("e.g. http://127.0.0.1:4318 (OTLP over HTTP)".into()),
            );
        }
    }
    let telemetry = Telemetry {
        json_logs,
        log_level: raw.telemetry.log_level.clone(),
        otlp_endpoint: raw.telemetry.otlp_endpoint.clone(),
        service_name: raw.telemetry.service_name.clone().unwrap_or_else(|| "firebreak".into()),
    };

    // Upstreams.
    let circuit = super::circuit::global(raw.circuit.as_ref(), problems);
    let mut upstreams = BTreeMap::new();
    for (name, (file, u)) in m.upstreams {
        let at = |k: &str| path(["upstreams".into(), name.clone().into(), k.into()]);
        let kind = match u.kind.as_str() {
            "openai" => UpstreamKind::OpenAi,
            "anthropic" => UpstreamKind::Anthropic,
            "scripted" => UpstreamKind::Scripted,
            other => {
                problems.add(
                    file,
                    at("kind"),
                    format!("unknown upstream kind `{other}`"),
                    Some("use \"openai\", \"anthropic\" or \"scripted\"".into()),
                );
                continue;
            }
        };
        let base_url = match (&u.base_url, kind) {
            (Some(url), UpstreamKind::OpenAi | UpstreamKind::Anthropic) => match url.parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some()
                        && uri.query().is_none() =>
                {
                    Some(uri)
                }
                _ => {
                    problems.add(
                        file,
                        at("base_url"),
                        format!("`{url}` is not an http(s) base URL"),
                        Some("e.g. https://api.openai.com (the API paths are appended)".into()),
                    );
                    None
                }
            },
            (None, UpstreamKind::OpenAi | UpstreamKind::Anthropic) => {
                problems.add(
                    file,
                    path(["upstreams".into(), name.clone().into()]),
                    format!("upstream `{name}` has no base_url"),
                    Some("add base_url = \"https://…\"".into()),
                );
                None
            }
            (Some(_), UpstreamKind::Scripted) => {
                problems.add(
                    file,
                    at("base_url"),
                    "a scripted upstream has no base_url",
                    Some("remove it, or use kind = \"openai\"/\"anthropic\"".into()),
                );
                None
            }
            (None, UpstreamKind::Scripted) => None,
        };
        let credential_source = match (&u.credential_env, &u.credential_file) {
            (Some(_), Some(_)) => {
                problems.add(file, at("credential_env"), "set credential_env or credential_file, not both", None);
                None
            }
            (Some(e), None) => Some(TokenSource::Env(e.clone())),
            (None, Some(f)) => Some(TokenSource::File(resolve(f))),
            (None, None) => None,
        };
        // A missing credential is not a policy error (`check` runs where the secret is absent); the
        // upstream refuses requests with a clear error until it is provided and rotated in.
        let credential = super::Credential::from_source(credential_source);
        let extra_ca = u.extra_ca.as_deref().map(resolve);
        if let Some(ca) = &extra_ca {
            if let Err(e) = super::tls::read_ca(ca) {
                problems.add(
                    file,
                    at("extra_ca"),
                    e,
                    Some("name a PEM file with one or more CERTIFICATE blocks".into()),
                );
            }
        }
        if kind != UpstreamKind::Scripted && !u.replies.is_empty() {
            problems.add(file, at("replies"), "only scripted upstreams have replies", None);
        }
        if kind == UpstreamKind::Scripted && u.replies.is_empty() {
            problems.add(
                file,
                path(["upstreams".into(), name.clone().into()]),
                format!("scripted upstream `{name}` has no replies"),
                Some("add [[upstreams.NAME.replies]] with text = \"…\"".into()),
            );
        }
        let chunk_chars = positive(u.chunk_chars, 8, file, at("chunk_chars"), problems) as usize;
        let chunk_delay = match u.chunk_delay_ms {
            None => Duration::from_millis(30),
            Some(n) if n >= 0 => Duration::from_millis(n as u64),
            Some(n) => {
                problems.add(file, at("chunk_delay_ms"), format!("must not be negative, not {n}"), None);
                Duration::ZERO
            }
        };
        let replies = u
            .replies
            .into_iter()
            .map(|r| Reply {
                when_contains: r.when_contains,
                text: r.text,
                tool_call: r.tool_call.map(|t| (t.name, t.arguments)),
            })
            .collect();
        // A scripted upstream never fails, so it has no breaker.
        let circuit = match kind {
            UpstreamKind::Scripted => None,
            _ => super::circuit::target(&circuit, u.circuit.as_ref(), file, &at("circuit"), problems),
        };
        upstreams.insert(
            name.clone(),
            Arc::new(Upstream {
                name,
                kind,
                base_url,
                credential,
                extra_ca,
                replies,
                chunk_chars,
                chunk_delay,
                circuit,
            }),
        );
    }

    // Managed prompts (before routes and keys, which bind them).
    let managed_prompts = super::prompts::compile(&raw.prompts, base, problems);

    // Routes.
    let mut routes = Vec::new();
    for (o, r) in m.routes {
        let at = |k: &str| path(["routes".into(), o.index.into(), k.into()]);
        let api = match r.api.as_str() {
            "openai" => Api::OpenAi,
            "anthropic" => Api::Anthropic,
            other => {
                problems.add(
                    o.file,
                    at("api"),
                    format!("unknown api `{other}`"),
                    Some("use \"openai\" or \"anthropic\"".into()),
                );
                continue;
            }
        };
        match upstreams.get(&r.upstream) {
            None => problems.add(
                o.file,
                at("upstream"),
                format!("unknown upstream `{}`", r.upstream),
                Some(format!("upstreams declared: {}", names(upstreams.keys()))),
            ),
            Some(u) => {
                let fits = matches!(
                    (api, u.kind),
                    (_, UpstreamKind::Scripted)
                        | (Api::OpenAi, UpstreamKind::OpenAi)
                        | (Api::Anthropic, UpstreamKind::Anthropic)
                );
                if !fits {
                    problems.add(
                        o.file,
                        at("upstream"),
                        format!("upstream `{}` does not speak the {} API", r.upstream, r.api),
                        Some("route each API to an upstream of its kind".into()),
                    );
                }
            }
        }
        let prompt =
            super::prompts::check_binding(&managed_prompts, r.prompt.as_deref(), o.file, at("prompt"), problems);
        if let Some(fb) = &r.fallback {
            super::circuit::check_fallback(api, &r.upstream, fb, &upstreams, o.file, &at("fallback"), problems);
        }
        routes.push(Route {
            api,
            any_model: r.models.is_empty(),
            models: GlobSet::new(r.models.iter().map(String::as_str)),
            upstream: r.upstream,
            prompt,
            fallback: r.fallback,
        });
    }
    // Implicit routes: an API with no route goes to its only upstream of that kind.
    for api in [Api::OpenAi, Api::Anthropic] {
        if routes.iter().any(|r| r.api == api) {
            continue;
        }
        let fitting: Vec<&Arc<Upstream>> = upstreams
            .values()
            .filter(|u| {
                matches!((api, u.kind), (Api::OpenAi, UpstreamKind::OpenAi) | (Api::Anthropic, UpstreamKind::Anthropic))
            })
            .collect();
        let only = match fitting.as_slice() {
            [one] => Some(*one),
            [] => upstreams.values().find(|u| u.kind == UpstreamKind::Scripted),
            _ => None,
        };
        if let Some(u) = only {
            routes.push(Route {
                api,
                any_model: true,
                models: GlobSet::default(),
                upstream: u.name.clone(),
                prompt: None,
                fallback: None,
            });
        }
    }

    // MCP servers, then roles and tools.
    let mcp = super::mcp::compile(&raw, base, &circuit, problems);
    let alerts = super::alerts::compile(&raw.alerts, base, problems);
    let mut roles = HashMap::new();
    for (name, (file, r)) in m.roles {
        let refuse_disallowed_tools = match r.disallowed_tools.as_deref() {
            None | Some("strip") => false,
            Some("refuse") => true,
            Some(other) => {
                problems.add(
                    file,
                    path(["roles".into(), name.clone().into(), "disallowed_tools".into()]),
                    format!("unknown action `{other}`"),
                    Some("use \"strip\" or \"refuse\"".into()),
                );
                false
            }
        };
        let mcp_globs = r.mcp.as_ref().map(|t| {
            super::mcp::check_role(&mcp, file, &name, t, problems);
            let servers = GlobSet::new(t.iter().map(|g| g.split('/').next().unwrap_or("")));
            (GlobSet::new(t.iter().map(String::as_str)), servers)
        });
        roles.insert(
            name,
            Role {
                tools: r.tools.as_ref().map(|t| GlobSet::new(t.iter().map(String::as_str))),
                mcp: mcp_globs,
                models: r.models.as_ref().map(|t| GlobSet::new(t.iter().map(String::as_str))),
                refuse_disallowed_tools,
            },
        );
    }
    let mut tools = HashMap::new();
    for (name, (file, t)) in m.tools {
        let args = compile_args(&t.args, file, &path(["tools".into(), name.clone().into()]), problems);
        tools.insert(name, ToolInfo { side_effects: t.side_effects, data: t.data.unwrap_or(!t.side_effects), args });
    }

    // Keys.
    let mut keys = HashMap::new();
    let mut key_ids = BTreeMap::new();
    for (o, k) in m.keys {
        let at = |f: &str| path(["keys".into(), o.index.into(), f.into()]);
        let mut digest = [0u8; 32];
        let hash_ok = k.sha256.len() == 64 && hex::decode_to_slice(&k.sha256, &mut digest).is_ok();
        if !hash_ok {
            problems.add(
                o.file,
                at("sha256"),
                format!("key `{}`: sha256 must be 64 hex digits", k.id),
                Some("run `firebreak key new --id ID` or `printf %s KEY | sha256sum`".into()),
            );
        }
        if !roles.contains_key(&k.role) {
            problems.add(
                o.file,
                at("role"),
                format!("key `{}`: unknown role `{}`", k.id, k.role),
                Some(format!("roles declared: {}", names(roles.keys()))),
            );
        }
        for (field, v) in [("id", &k.id), ("tenant", &k.tenant), ("user", &k.user)] {
            if v.trim().is_empty() {
                problems.add(o.file, at(field), format!("key {field} must not be empty"), None);
            }
        }
        let expires = match &k.expires {
            None => None,
            Some(s) => match humantime::parse_rfc3339_weak(s) {
                Ok(t) => Some(t),
                Err(_) => {
                    problems.add(
                        o.file,
                        at("expires"),
                        format!("`{s}` is not a date-time"),
                        Some("write RFC 3339 UTC, e.g. 2027-01-31T00:00:00Z".into()),
                    );
                    None
                }
            },
        };
        let prompt =
            super::prompts::check_binding(&managed_prompts, k.prompt.as_deref(), o.file, at("prompt"), problems);
        let entry =
            Arc::new(KeyEntry { id: k.id.clone(), tenant: k.tenant, user: k.user, role: k.role, expires, prompt });
        if key_ids.insert(k.id.clone(), entry.clone()).is_some() {
            problems.add(
                o.file,
                at("id"),
                format!("key id `{}` is used twice", k.id),
                Some("key ids must be unique".into()),
            );
        }
        if hash_ok && keys.insert(digest, entry).is_some() {
            problems.add(
                o.file,
                at("sha256"),
                format!("key `{}` has the same hash as another key", k.id),
                Some("issue a new key".into()),
            );
        }
    }

    let tenants = compile_tenants(m.tenants, &key_ids, problems);

    // Levels.
    let mut settings = Level::ALL.map(default_level);
    for (name, lv) in &raw.levels {
        let at = |k: &str| path(["levels".into(), name.clone().into(), k.into()]);
        let Some(level) = Level::parse(name) else {
            problems.add(
                0,
                path(["levels".into(), name.clone().into()]),
                format!("unknown level `{name}`"),
                Some("levels are normal, elevated, critical, lockdown".into()),
            );
            continue;
        };
        let s = &mut settings[level as usize];
        if let Some(rpm) = lv.requests_per_minute {
            match u32::try_from(rpm) {
                Ok(v) => s.requests_per_minute = v,
                Err(_) => problems.add(0, at("requests_per_minute"), format!("must be 0 or more, not {rpm}"), None),
            }
        }
        if let Some(n) = lv.max_in_flight {
            match u32::try_from(n) {
                Ok(v) => s.max_in_flight = v,
                Err(_) => problems.add(0, at("max_in_flight"), format!("must be 0 or more, not {n}"), None),
            }
        }
        if let Some(t) = &lv.tools {
            s.tools = match t.as_str() {
                "all" => ToolsMode::All,
                "no_side_effects" => ToolsMode::NoSideEffects,
                "none" => ToolsMode::None,
                other => {
                    problems.add(
                        0,
                        at("tools"),
                        format!("unknown tools mode `{other}`"),
                        Some("use \"all\", \"no_side_effects\" or \"none\"".into()),
                    );
                    s.tools
                }
            };
        }
        if lv.model.is_some() {
            s.model = lv.model.clone();
        }
        if let Some(msg) = &lv.message {
            s.message = msg.clone();
        }
    }

    let inspection = super::inspection::compile(&raw, &managed_prompts, base, problems);
    let incidents = super::incidents::IncidentPolicy::compile(&raw.incidents, &raw.triggers, &raw.plans, problems);

    Some(Policy {
        scanner: inspection.as_ref().map(|i| i.scanner.clone())?,
        base_scanner: inspection.as_ref().map(|i| i.scanner.clone())?,
        managed_prompts: Arc::new(managed_prompts),
        egress: inspection.as_ref().map(|i| i.egress.clone())?,
        prompts: inspection.as_ref().map(|i| i.prompts.clone())?,
        injection: inspection.map(|i| i.injection)?,
        source: PathBuf::new(),
        listen,
        admin_token_source,
        admins: Arc::new(super::admins::compile(&raw.admins, raw.admin.require_second.as_ref(), problems)),
        storage,
        limits,
        telemetry,
        upstreams,
        routes,
        keys,
        key_ids,
        roles,
        tools,
        mcp: Arc::new(mcp),
        tenants: Arc::new(tenants),
        levels: Levels(settings),
        incidents: Arc::new(incidents),
        forensics: super::forensics::compile(raw.forensics.as_ref(), base, problems).map(Arc::new),
        sha256: String::new(),
        alerts: Arc::new(alerts),
        audit: AuditSettings {
            store_blocked_payloads: raw.audit.store_blocked_payloads.unwrap_or(false),
            on_failure,
            key: audit_key,
            previous_key: previous_audit_key,
        },
        safe_mode_reply: raw.safe_mode.reply.unwrap_or_else(|| {
            "This assistant is temporarily in safe mode. Your request was received but cannot be processed right now.".into()
        }),
    })
}

/// `[tenants.X] identifiers`: each one long enough, owned by one tenant only, and every tenant one
/// that keys belong to (a misspelt tenant would make its own users trip the detector).
fn compile_tenants(
    raw: BTreeMap<String, (usize, super::raw::RawTenant)>,
    key_ids: &BTreeMap<String, Arc<KeyEntry>>,
    problems: &mut Problems,
) -> crate::inspect::tenants::TenantIds {
    let known: std::collections::BTreeSet<&str> = key_ids.values().map(|k| k.tenant.as_str()).collect();
    let mut owner_of: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let mut files = HashMap::new();
    for (name, (file, t)) in raw {
        files.insert(name.clone(), file);
        let at = |i: usize| path(["tenants".into(), name.clone().into(), "identifiers".into(), i.into()]);
        if !known.contains(name.as_str()) {
            problems.add(
                file,
                path(["tenants".into(), name.clone().into()]),
                format!("tenant `{name}` is not the tenant of any key"),
                Some(format!(
                    "name a tenant as written in [[keys]] tenant = \"…\"; tenants with keys: {}",
                    if known.is_empty() {
                        "(none)".to_owned()
                    } else {
                        known.iter().copied().collect::<Vec<_>>().join(", ")
                    }
                )),
            );
        }
        let mut ids = Vec::new();
        for (i, id) in t.identifiers.into_iter().enumerate() {
            if let Some(why) = crate::inspect::tenants::check(&id) {
                problems.add(file, at(i), why, Some("use a distinctive prefix or domain, e.g. \"ACME-CUST-\"".into()));
                continue;
            }
            match owner_of.insert(id.to_ascii_lowercase(), name.clone()) {
                Some(other) if other != name => problems.add(
                    file,
                    at(i),
                    format!("identifier `{id}` is declared for tenants `{other}` and `{name}`"),
                    Some("an identifier must belong to one tenant".into()),
                ),
                _ => ids.push(id),
            }
        }
        out.push((name, ids));
    }
    // An identifier inside another tenant's (`ACME-` in `XACME-1`) would make that tenant's own data
    // look like a leak of this one's, and contain its users.
    for (a, ids_a) in &out {
        for (b, ids_b) in out.iter().filter(|(b, _)| b != a) {
            for long in ids_a {
                let lower = long.to_ascii_lowercase();
                if let Some(short) = ids_b.iter().find(|s| lower.contains(&s.to_ascii_lowercase())) {
                    problems.add(
                        files.get(a).copied().unwrap_or(0),
                        path(["tenants".into(), a.clone().into(), "identifiers".into()]),
                        format!("identifier `{long}` of tenant `{a}` contains `{short}` of tenant `{b}`"),
                        Some(format!("`{a}`'s own data would count as `{b}`'s: make `{short}` more specific")),
                    );
                }
            }
        }
    }
    crate::inspect::tenants::TenantIds::new(&out).unwrap_or_else(|e| {
        problems.add(0, path(["tenants".into()]), format!("tenant identifiers: {e}"), None);
        crate::inspect::tenants::TenantIds::default()
    })
}

fn default_level(level: Level) -> LevelSettings {
    let (rpm, in_flight, tools) = match level {
        Level::Normal => (100, 64, ToolsMode::All),
        Level::Elevated => (20, 16, ToolsMode::NoSideEffects),
        Level::Critical => (5, 4, ToolsMode::None),
        // Lockdown refuses AI and MCP requests by its switch (with its message); the share only
        // matters for what lockdown lets through.
        Level::Lockdown => (0, 4, ToolsMode::None),
    };
    LevelSettings {
        requests_per_minute: rpm,
        max_in_flight: in_flight,
        tools,
        model: None,
        message: "The AI service is under maintenance. Please try again later.".into(),
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}
