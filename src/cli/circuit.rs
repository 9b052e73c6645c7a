//! `firebreak admin circuit-status` for people: one line per upstream and MCP server.

use serde_json::Value;

/// The table printed for `GET /admin/v1/circuits`.
pub(super) fn text(v: &Value) -> String {
    let list = v["circuits"].as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "the policy declares no upstream or MCP server".into();
    }
    let mut rows = vec![[
        "TARGET".to_owned(),
        "KIND".into(),
        "STATE".into(),
        "FAILURE RATE".into(),
        "CONSECUTIVE".into(),
        "LAST ERROR".into(),
        "IN STATE".into(),
    ]];
    for c in list {
        let s = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
        let n = |k: &str| c[k].as_u64().map_or("-".to_owned(), |n| n.to_string());
        if c["enabled"] != Value::Bool(true) {
            rows.push([s("name"), s("kind"), "off".into(), "-".into(), "-".into(), "-".into(), "-".into()]);
            continue;
        }
        let rate =
            match (c["failure_rate"].as_f64(), c["failures_in_window"].as_u64(), c["requests_in_window"].as_u64()) {
                (Some(r), Some(f), Some(t)) => format!("{:.0}% ({f}/{t})", r * 100.0),
                _ => "-".into(),
            };
        let mut state = s("state");
        if let Some(ms) = c["retry_after_ms"].as_u64() {
            state = format!("{state} (probe in {})", human_ms(ms));
        }
        let in_state = c["time_in_state_ms"].as_u64().map_or("-".into(), human_ms);
        rows.push([s("name"), s("kind"), state, rate, n("consecutive_failures"), s("last_error"), in_state]);
    }
    let widths: Vec<usize> = (0..7).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// `1h 2m`, `12s`, `450ms`.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}
