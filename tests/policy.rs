//! `firebreak check`: shipped policies pass; a broken policy gets every problem reported with the
//! right `file:line` and a hint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firebreak")).arg("check").args(args).output().expect("run firebreak check")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn demo_policy_checks_clean() {
    let demo = policies().join("demo.toml");
    let out = check(&[&demo]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(": ok"), "{}", text(&out));
}

#[test]
fn example_policy_checks_clean() {
    let example = policies().join("example.toml");
    if !example.exists() {
        eprintln!("policies/example.toml is absent; skipping its check");
        return;
    }
    let out = check(&[&example]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A policy with one problem of each kind; `<-` marks the line each problem must be reported at.
const BROKEN: &str = r#"# A policy with many problems at once.
[listen]
proxy = "not-an-address"                  # <- listen
admin = "127.0.0.1:9090"

[upstreams.good]
kind = "scripted"
colour = "blue"                           # <- unknown field

[[upstreams.good.replies]]
text = "hello"

[upstreams.weird]
kind = "telepathy"                        # <- upstream kind

[[routes]]
api = "openai"
upstream = "nowhere"                      # <- route

[[keys]]
id = "k1"
sha256 = "zz-not-hex"                     # <- sha256
tenant = "acme"
user = "alice"
role = "developer"

[[keys]]
id = "k2"
sha256 = "391594d5130b8100f52f2968cbb371d1aa750b5a0284e03478e200b5082861a1"
tenant = "acme"
user = "bob"
role = "wizard"                           # <- role

[roles.developer]
tools = ["search_*"]
"#;

fn line_of(marker: &str) -> usize {
    BROKEN.lines().position(|l| l.contains(&format!("# <- {marker}"))).unwrap_or_else(|| panic!("no marker {marker}"))
        + 1
}

/// Splits `check` output into problems: a `file:line: message` line and its `hint:` line.
fn problems(out: &str, file: &str) -> Vec<(usize, String, Option<String>)> {
    let lines: Vec<&str> = out.lines().collect();
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix(&format!("{file}:")) else {
            continue;
        };
        let (line, msg) = rest.split_once(": ").expect("file:line: message");
        let hint = lines.get(i + 1).and_then(|h| h.trim_start().strip_prefix("hint: ")).map(str::to_owned);
        found.push((line.parse().expect("line number"), msg.to_owned(), hint));
    }
    found
}

#[test]
fn broken_policy_reports_every_problem_with_file_line_and_hint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("broken.toml");
    std::fs::write(&file, BROKEN).expect("write");
    let out = check(&[&file]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let found = problems(&all, &file.display().to_string());
    let expect = [
        ("listen", "not-an-address"),
        ("unknown field", "colour"),
        ("upstream kind", "telepathy"),
        ("route", "nowhere"),
        ("sha256", "hex"),
        ("role", "wizard"),
    ];
    for (marker, word) in expect {
        let line = line_of(marker);
        let p = found
            .iter()
            .find(|(l, m, _)| *l == line && m.contains(word))
            .unwrap_or_else(|| panic!("no problem mentioning `{word}` at {}:{line}:\n{all}", file.display()));
        let hint = p.2.as_deref().unwrap_or_else(|| panic!("problem at line {line} has no hint:\n{all}"));
        assert!(!hint.trim().is_empty(), "{all}");
    }
    assert_eq!(found.len(), expect.len(), "exactly these problems, no noise:\n{all}");
    assert!(all.contains(&format!("{} problem(s) found", expect.len())), "{all}");
    // Problems are sorted by line.
    let lines: Vec<usize> = found.iter().map(|p| p.0).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "{all}");
}

#[test]
fn broken_policy_problems_as_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("broken.toml");
    std::fs::write(&file, BROKEN).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak")).args(["check", "--json"]).arg(&file).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let problems = v["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 6, "{v}");
    for p in problems {
        assert_eq!(p["file"], file.display().to_string().as_str(), "{p}");
        assert!(p["line"].as_u64().is_some_and(|l| l > 0), "{p}");
        assert!(p["hint"].is_string(), "{p}");
    }
    let lines: Vec<u64> = problems.iter().filter_map(|p| p["line"].as_u64()).collect();
    for marker in ["listen", "unknown field", "upstream kind", "route", "sha256", "role"] {
        assert!(lines.contains(&(line_of(marker) as u64)), "{marker} at line {}: {v}", line_of(marker));
    }
}

#[test]
fn several_unknown_keys_are_all_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("typos.toml");
    let policy = r#"lisen = "127.0.0.1:8080"

[upstreams.s]
kind = "scripted"
replies = [{ text = "hi", mood = "sad" }]

[[keys]]
id = "k1"
sha256 = "391594d5130b8100f52f2968cbb371d1aa750b5a0284e03478e200b5082861a1"
tenant = "acme"
user = "bob"
role = "developer"
nickname = """spans
two lines"""

[roles.developer]
tool = ["x"]

[safe_mode]
reply = "safe"
replay = "typo"
"#;
    std::fs::write(&file, policy).expect("write");
    let out = check(&[&file]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let found = problems(&all, &file.display().to_string());
    let at = |word: &str| policy.lines().position(|l| l.contains(word)).expect("word") + 1;
    for word in ["lisen", "mood", "nickname", "tool = ", "replay"] {
        let line = at(word);
        let name = word.trim_end_matches(" = ");
        assert!(
            found.iter().any(|(l, m, h)| *l == line && m.contains(&format!("`{name}`")) && h.is_some()),
            "unknown key `{name}` reported at line {line}:\n{all}"
        );
    }
    assert_eq!(found.len(), 5, "{all}");
}

#[test]
fn missing_file_is_reported() {
    let out = check(&[Path::new("/nonexistent/firebreak/policy.toml")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot read policy"), "{}", text(&out));
}
