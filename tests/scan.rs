//! `firebreak scan`: finds credentials in files and directories, prints where and which rule, never
//! the secret; exit status 1 on findings, 0 when clean.

use std::process::Command;

fn scan(args: &[&str]) -> (i32, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_firebreak")).arg("scan").args(args).output().expect("run firebreak scan");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn reports_file_line_rule_without_the_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    std::fs::write(logs.join("app.log"), "start\nuser=bob key=AKIAZ7Q3M4N5P6R2T8VW ok\ncard 4111 1111 1111 1111\n")
        .expect("write");
    std::fs::write(logs.join("clean.log"), "nothing to see\n").expect("write");
    std::fs::write(dir.path().join("blob.bin"), b"\x00\x01AKIAZ7Q3M4N5P6R2T8VW").expect("write");

    let (code, out) = scan(&[dir.path().to_str().unwrap_or_default()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("app.log:2:14: aws_access_key_id"), "{out}");
    assert!(out.contains("app.log:3:6: payment_card"), "{out}");
    assert!(!out.contains("AKIAZ7Q3M4N5P6R2T8VW") && !out.contains("4111"), "the secret must not be printed: {out}");
    assert!(!out.contains("blob.bin"), "binary files are skipped: {out}");

    let (code, out) = scan(&["--json", logs.join("app.log").to_str().unwrap_or_default()]);
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["rule"], "aws_access_key_id");
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(lines[2]["summary"]["findings"], 2);

    let (code, _) = scan(&[logs.join("clean.log").to_str().unwrap_or_default()]);
    assert_eq!(code, 0);
    let (code, _) = scan(&["/nonexistent/path"]);
    assert_eq!(code, 2, "an unreadable path is an error, not a clean result");
}
