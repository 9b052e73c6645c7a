//! OpenTelemetry export: with `[telemetry] otlp_endpoint` set, traces and metrics reach an OTLP/HTTP
//! collector; without it, nothing is exported. Also: JSON logs carry the request span and no secret.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{sha256_hex, Gateway};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const KEY: &str = "fbk-telemetry-test-key";

/// A minimal OTLP/HTTP collector: records the path and size of every POST.
async fn collector() -> (String, Arc<Mutex<Vec<(String, usize)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        s.lock().unwrap().push((path, body.len()));
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn policy(otlp: Option<&str>) -> String {
    let telemetry = match otlp {
        Some(ep) => {
            format!("[telemetry]\nlog_format = \"json\"\notlp_endpoint = \"{ep}\"\nservice_name = \"firebreak-test\"\n")
        }
        None => "[telemetry]\nlog_format = \"json\"\n".to_owned(),
    };
    format!(
        r#"{telemetry}
[upstreams.s]
kind = "scripted"
chunk_delay_ms = 0
[[upstreams.s.replies]]
text = "hello"

[[keys]]
id = "tele"
sha256 = "{}"
tenant = "t"
user = "u"
role = "r"

[roles.r]
"#,
        sha256_hex(KEY)
    )
}

async fn chat(gw: &Gateway) -> u16 {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn start(policy: &str) -> (Gateway, tempfile::TempDir) {
    start_logging(policy, "info,firebreak=debug")
}

/// Starts the gateway with `FIREBREAK_LOG=filter`.
fn start_logging(policy: &str, filter: &str) -> (Gateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), policy).expect("write");
    let env = [("OTEL_METRIC_EXPORT_INTERVAL", "300"), ("OTEL_BSP_SCHEDULE_DELAY", "100"), ("FIREBREAK_LOG", filter)];
    let gw = Gateway::try_spawn_with_env(tmp.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    (gw, tmp)
}

#[tokio::test]
async fn exports_traces_and_metrics_over_otlp_http() {
    let (endpoint, seen) = collector().await;
    let (gw, _tmp) = start(&policy(Some(&endpoint)));
    assert_eq!(chat(&gw).await, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let paths: Vec<String> = seen.lock().unwrap().iter().filter(|(_, n)| *n > 0).map(|(p, _)| p.clone()).collect();
        if paths.iter().any(|p| p == "/v1/traces") && paths.iter().any(|p| p == "/v1/metrics") {
            break;
        }
        assert!(Instant::now() < deadline, "collector saw only {paths:?}; gateway log:\n{}", gw.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_span_and_no_key() {
    let (gw, _tmp) = start(&policy(None));
    assert_eq!(chat(&gw).await, 200);
    // The request line is logged when the gateway answers; poll for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.stderr();
        let request_line = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == "request");
        if let Some(line) = request_line {
            let span = &line["span"];
            assert_eq!(span["status"], 200, "{line}");
            assert_eq!(span["key_id"], "tele", "{line}");
            assert!(span["request_id"].as_str().is_some_and(|r| r.contains("req_")), "{line}");
            assert!(!log.contains(KEY), "the virtual key must never be logged");
            assert!(!log.contains(common::ADMIN_TOKEN), "the admin token must never be logged");
            break;
        }
        assert!(Instant::now() < deadline, "no JSON log line found:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// At `info`, clean requests leave no log line (the audit trail has them); a refusal does.
#[tokio::test]
async fn info_logs_refusals_and_not_clean_requests() {
    let (gw, _tmp) = start_logging(&policy(None), "info");
    assert_eq!(chat(&gw).await, 200);
    let refused = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("not-a-firebreak-key")
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = gw
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "request")
            .collect();
        if let Some(line) = lines.iter().find(|v| v["span"]["status"] == 401) {
            assert_eq!(line["level"], "INFO", "{line}");
            assert!(lines.iter().all(|v| v["span"]["status"] != 200), "a clean request was logged at info: {lines:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no log line for the refused request:\n{}", gw.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
