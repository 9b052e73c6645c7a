//! Issue 13, items 4–7: what a client that holds connections, trickles bodies or uploads a lot must
//! not be able to do to the gateway and to other clients. Real gateway process, raw TCP sockets
//! where the wire matters. Every wait is bounded by a deadline; the figures the issue asks for are
//! printed (`cargo test --test hardening_dos -- --nocapture`).

mod common;
mod upstream;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use upstream::gw::*;
use upstream::*;

const CHAT: &str = "/v1/chat/completions";

// === raw HTTP/1.1 helpers ===

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response (content-length bodies only: every gateway error has one).
async fn read_response<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<RawResponse> {
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut resp = RawResponse { status, head, body: Vec::new() };
    let len: usize = resp.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < end + len {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    resp.body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    Ok(resp)
}

async fn response_within(s: &mut TcpStream, d: Duration) -> RawResponse {
    let mut buf = Vec::new();
    tokio::time::timeout(d, read_response(s, &mut buf))
        .await
        .expect("a response within the deadline")
        .expect("a whole response")
}

/// How long until the gateway closes `s` (EOF or reset), reading and dropping whatever it sends;
/// `None` when it is still open at the deadline.
async fn closed_within(s: &mut TcpStream, d: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    let wait = async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(d, wait).await.ok().map(|()| start.elapsed())
}

fn request_head(method: &str, path: &str, key: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\n{extra}\r\n")
}

/// Resident memory of a process in MiB, from /proc/PID/status.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// CPU time (user + system) of a process in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after_name.split(' ').collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

async fn wait_for_log(gw: &common::Gateway, needle: &str, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if gw.stderr().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// === item 4: idle connections ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_silent_keepalive_and_http2() {
    let (_up, gw) = setup("[limits]\nfirst_byte_timeout_ms = 1000\nidle_timeout_ms = 1500\n").await;
    let proxy = addr(&gw.proxy);

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(&proxy).await.expect("connect");
    let cut = closed_within(&mut silent, Duration::from_secs(6)).await.expect("a silent connection is closed");
    println!("silent connection closed after {cut:?} (first_byte_timeout 1 s)");
    assert!(cut >= Duration::from_millis(900) && cut < Duration::from_secs(4), "{cut:?}");

    // An HTTP/1.1 keep-alive connection after one request.
    let mut ka = TcpStream::connect(&proxy).await.expect("connect");
    ka.write_all(request_head("GET", "/nope", ALICE, "").as_bytes()).await.expect("write");
    let r = response_within(&mut ka, Duration::from_secs(5)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("connection"), None, "a served request keeps the connection alive: {}", r.head);
    let cut = closed_within(&mut ka, Duration::from_secs(8)).await.expect("an idle keep-alive connection is closed");
    println!("idle HTTP/1.1 keep-alive connection closed after {cut:?} (idle_timeout 1.5 s)");
    assert!(cut >= Duration::from_millis(1400) && cut < Duration::from_secs(5), "{cut:?}");

    // An HTTP/2 connection (prior knowledge) with no stream.
    let mut h2 = TcpStream::connect(&proxy).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.expect("preface");
    let cut = closed_within(&mut h2, Duration::from_secs(8)).await.expect("an idle HTTP/2 connection is closed");
    println!("idle HTTP/2 connection closed after {cut:?} (idle_timeout 1.5 s)");
    assert!(cut >= Duration::from_millis(1400) && cut < Duration::from_secs(5), "{cut:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_idle_timeout_is_not_cut() {
    let (up, gw) = setup("[limits]\nfirst_byte_timeout_ms = 1000\nidle_timeout_ms = 1000\n").await;
    let events: Vec<String> =
        parse_sse(&chat_sse(&["one ", "two ", "three ", "four"], "gpt-4o")).into_iter().map(|e| e.raw).collect();
    let n = events.len();
    up.push(Reply::sse_chunks(events).with_chunk_delay(Duration::from_millis(500)));
    let start = Instant::now();
    let resp =
        post(&client(), &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", true)).send().await.expect("stream");
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(c) = tokio::time::timeout_at(deadline, stream.next()).await.expect("stream ends in time") {
        body.extend_from_slice(&c.expect("a clean stream, not a cut connection"));
    }
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(chat_stream_text(&parse_sse(&text)), "one two three four", "{text}");
    assert!(
        elapsed > Duration::from_millis(1000) * (n as u32 - 1) / 2,
        "the stream outlived the idle timeout: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_accepting_pauses_without_spinning_and_the_admin_api_answers() {
    let (_up, gw) =
        setup("[limits]\nmax_connections = 16\nfirst_byte_timeout_ms = 30000\nidle_timeout_ms = 30000\n").await;
    let proxy = addr(&gw.proxy);
    let pid = gw.pid();

    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(&proxy).await.expect("connect"));
    }
    assert!(
        wait_for_log(&gw, "connection limit reached", Duration::from_secs(5)).await,
        "the gateway logs that it reached its cap:\n{}",
        gw.stderr()
    );
    // Beyond the cap: the kernel queues the connection, the gateway does not serve it yet.
    let mut queued = Vec::new();
    for _ in 0..8 {
        queued.push(TcpStream::connect(&proxy).await.expect("the kernel's backlog takes it"));
    }
    let mut waiting = TcpStream::connect(&proxy).await.expect("connect");
    waiting.write_all(request_head("GET", "/nope", ALICE, "").as_bytes()).await.expect("write");
    let cpu_before = cpu_ticks(pid);
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_secs(1), read_response(&mut waiting, &mut buf)).await;
    assert!(early.is_err(), "a connection beyond the cap is not served while the cap is full");
    let spent = cpu_ticks(pid) - cpu_before;

    let t = Instant::now();
    let (status, _) = gw.admin(reqwest::Method::GET, "/healthz", None).await;
    let admin_latency = t.elapsed();
    assert_eq!(status, 200, "the admin API answers while the proxy listener is saturated");
    println!(
        "held {} proxy connections (cap 16) + {} queued; admin /healthz {status} in {admin_latency:?}; \
         gateway CPU over 1 s at the cap: {spent} ticks",
        held.len(),
        queued.len() + 1
    );
    assert!(spent < 30, "the acceptor waits at the cap instead of spinning: {spent} ticks in 1 s");

    // Connections that close make room: the queued ones are served, in order.
    drop(queued);
    held.truncate(6);
    let r = tokio::time::timeout(Duration::from_secs(10), read_response(&mut waiting, &mut buf))
        .await
        .expect("served once room is made")
        .expect("a response");
    assert_eq!(r.status, 404);
    assert!(
        wait_for_log(&gw, "below the connection limit again", Duration::from_secs(5)).await,
        "the gateway logs that it accepts again"
    );
}

// === item 5: slow bodies ===

const SLOW_LIMITS: &str = r#"
[limits]
max_concurrent_requests = 16
request_body_timeout_ms = 2000
min_request_body_bytes_per_sec = 1000

[levels.normal]
max_in_flight = 4
"#;

/// An upload that sends its head and then one byte every 200 ms; returns the response and when
/// it came.
async fn trickle(proxy: String, key: &'static str) -> (Option<RawResponse>, Duration) {
    let start = Instant::now();
    let s = TcpStream::connect(&proxy).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let head = request_head("POST", CHAT, key, "content-length: 10000\r\n");
    wr.write_all(head.as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = Vec::new();
    let r =
        tokio::time::timeout(Duration::from_secs(15), read_response(&mut rd, &mut buf)).await.ok().and_then(Result::ok);
    writer.abort();
    (r, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_trickling_uploads_never_starves_another_and_each_is_cut_with_408() {
    let (up, gw) = setup(SLOW_LIMITS).await;
    up.set_default(Reply::json(&chat_json("hello bob", "gpt-4o")));
    let proxy = addr(&gw.proxy);

    // Alice trickles 40 uploads at 5 bytes/s, far more than the 16 concurrency slots.
    let tricklers: Vec<_> = (0..40).map(|_| tokio::spawn(trickle(proxy.clone(), ALICE))).collect();
    // Wait until alice's share is taken (the others are refused at once), then bob asks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tricklers.iter().any(|t| t.is_finished()) {
        assert!(Instant::now() < deadline, "alice's uploads beyond her share are refused at once");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bob = send(post(&client(), &gw, CHAT, Auth::Bearer(BOB), &chat_body("gpt-4o", false))).await;
    assert_eq!(bob.status, 200, "bob is served while alice trickles: {}", bob.text);

    let (mut cut, mut refused, mut cut_after) = (0, 0, Vec::new());
    for t in tricklers {
        let (r, took) = t.await.expect("task");
        let r = r.expect("every trickling upload gets an answer");
        match r.status {
            408 => {
                cut += 1;
                cut_after.push(took);
                let v = r.json();
                assert_eq!(v["error"]["code"], "body_timeout", "OpenAI error shape: {v}");
                assert_eq!(r.header("connection").as_deref(), Some("close"), "{}", r.head);
            }
            429 => {
                refused += 1;
                assert_eq!(r.json()["error"]["code"], "user_in_flight");
                assert_eq!(r.header("retry-after").as_deref(), Some("1"));
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    println!("alice: {cut} uploads cut with 408 after {cut_after:?} (1 s grace, 1000 B/s minimum), {refused} refused with 429; bob: 200");
    assert_eq!(cut, 4, "alice holds at most her level's share (4)");
    assert_eq!(refused, 36);
    for took in cut_after {
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "cut by the rate rule: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_timeout_allows_gets_408_in_the_callers_format() {
    // The MCP server is never reached: the body is refused first.
    let mcp = "\n[mcp_servers.srv]\nurl = \"http://127.0.0.1:9/mcp\"\n";
    let (_up, gw) = setup(&format!("{SLOW_LIMITS}{mcp}")).await;
    let proxy = addr(&gw.proxy);
    for (path, key) in [(CHAT, ALICE), ("/v1/messages", BOB), ("/mcp/srv", ALICE)] {
        // 2,500 bytes/s is above the minimum rate, but 20,000 bytes take 8 s: the 2 s total applies.
        let s = TcpStream::connect(&proxy).await.expect("connect");
        let (mut rd, mut wr) = s.into_split();
        let extra = "content-length: 20000\r\nanthropic-version: 2023-06-01\r\n";
        let start = Instant::now();
        wr.write_all(request_head("POST", path, key, extra).as_bytes()).await.expect("head");
        let writer = tokio::spawn(async move {
            for _ in 0..80 {
                if wr.write_all(&[b' '; 250]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), read_response(&mut rd, &mut buf))
            .await
            .expect("an answer before the upload ends")
            .expect("a response");
        let took = start.elapsed();
        writer.abort();
        println!("{path}: 408 after {took:?} (request_body_timeout 2 s)");
        assert_eq!(r.status, 408, "{}", String::from_utf8_lossy(&r.body));
        assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(3500), "{took:?}");
        let v = r.json();
        if path == CHAT {
            assert_eq!(v["error"]["code"], "body_timeout", "{v}");
        } else if path.starts_with("/mcp/") {
            assert_eq!(v["jsonrpc"], "2.0", "a JSON-RPC error: {v}");
            assert!(v["error"]["code"].is_i64() && v["error"]["message"].is_string(), "{v}");
        } else {
            assert_eq!(v["type"], "error", "Anthropic shape: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        }
        assert_eq!(r.header("connection").as_deref(), Some("close"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_timeout_frees_the_global_slots_a_slow_upload_held() {
    // Alice's share is as large as the gateway: only the body timeout can free the slots.
    let limits = "[limits]\nmax_concurrent_requests = 4\nrequest_body_timeout_ms = 2000\n\
                  min_request_body_bytes_per_sec = 1000\n\n[levels.normal]\nmax_in_flight = 100\n";
    let (up, gw) = setup(limits).await;
    up.set_default(Reply::json(&chat_json("hello bob", "gpt-4o")));
    let proxy = addr(&gw.proxy);
    let start = Instant::now();
    let tricklers: Vec<_> = (0..4).map(|_| tokio::spawn(trickle(proxy.clone(), ALICE))).collect();
    // Once the four uploads are in flight (the admin's gauge), bob retries until served.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = gw.admin(reqwest::Method::GET, "/metrics", None).await;
        if metrics.as_str().is_some_and(|m| m.contains("firebreak_requests_in_flight 4")) {
            break;
        }
        assert!(Instant::now() < deadline, "four uploads in flight: {metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut overloaded = 0;
    let served_after = loop {
        let g = send(post(&client(), &gw, CHAT, Auth::Bearer(BOB), &chat_body("gpt-4o", false))).await;
        match g.status {
            200 => break start.elapsed(),
            503 => overloaded += 1,
            s => panic!("unexpected {s}: {}", g.text),
        }
        assert!(Instant::now() < deadline, "bob is served once alice's uploads time out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for t in tricklers {
        let (r, took) = t.await.expect("task");
        assert_eq!(r.expect("an answer").status, 408, "cut after {took:?}");
    }
    println!(
        "4 slots held by trickling uploads: bob refused {overloaded} times with 503, served after {served_after:?}"
    );
    assert!(overloaded > 0, "while the slow uploads held every slot, bob was refused");
    assert!(served_after < Duration::from_secs(4), "{served_after:?}");
}

// === item 6: memory held by uploads ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_uploads_stay_within_the_buffered_bytes_budget() {
    const MIB: usize = 1 << 20;
    let limits = r#"
[limits]
max_request_body_bytes = 8388608
max_buffered_request_bytes = 33554432
request_body_timeout_ms = 60000
min_request_body_bytes_per_sec = 1

[levels.normal]
max_in_flight = 1000
requests_per_minute = 100000
"#;
    let (up, gw) = setup(limits).await;
    up.set_default(Reply::json(&chat_json("ok", "gpt-4o")));
    let proxy = addr(&gw.proxy);
    let pid = gw.pid();
    // Warm up (first request, pools, allocator arenas) before the baseline.
    let g = send(post(&client(), &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", false))).await;
    assert_eq!(g.status, 200, "{}", g.text);
    let before = rss_mib(pid);

    // 64 uploads of 8 MiB each, all but the last byte sent and held.
    let body = {
        let mut b = br#"{"model":"gpt-4o","messages":[{"role":"user","content":""#.to_vec();
        let tail = br#""}]}"#;
        b.resize(8 * MIB - tail.len(), b'a');
        b.extend_from_slice(tail);
        std::sync::Arc::new(b)
    };
    enum Fate {
        Held(tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf),
        Refused(Option<RawResponse>),
    }
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (proxy, body) = (proxy.clone(), body.clone());
            tokio::spawn(async move {
                let s = TcpStream::connect(&proxy).await.expect("connect");
                let (mut rd, mut wr) = s.into_split();
                let head = request_head("POST", CHAT, ALICE, &format!("content-length: {}\r\n", body.len()));
                wr.write_all(head.as_bytes()).await.expect("head");
                let mut buf = Vec::new();
                tokio::select! {
                    biased;
                    r = read_response(&mut rd, &mut buf) => Fate::Refused(r.ok()),
                    w = wr.write_all(&body[..body.len() - 1]) => match w {
                        Ok(()) => Fate::Held(rd, wr),
                        Err(_) => Fate::Refused(read_response(&mut rd, &mut buf).await.ok()),
                    },
                }
            })
        })
        .collect();
    let mut held = Vec::new();
    let (mut refused, mut readable) = (0, 0);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await.expect("every upload settles").expect("task") {
            Fate::Held(rd, wr) => held.push((rd, wr)),
            Fate::Refused(r) => {
                refused += 1;
                if let Some(r) = r {
                    readable += 1;
                    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
                    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
                    assert_eq!(r.json()["error"]["code"], "buffered_bytes");
                }
            }
        }
    }
    let during = rss_mib(pid);
    println!(
        "RSS before {before:.1} MiB; with 64 uploads of 8 MiB attempted: {} held, {refused} refused with 503 \
         ({readable} responses read before the reset), RSS {during:.1} MiB (+{:.1} MiB; budget 32 MiB)",
        held.len(),
        during - before
    );
    assert_eq!(held.len(), 4, "the 32 MiB budget holds four 8 MiB bodies");
    assert!(readable > 0, "refused uploads are told 503 with Retry-After");
    assert!(during - before < 32.0 + 24.0, "buffered uploads stay within the budget: +{:.1} MiB", during - before);

    // The held uploads complete normally, and the budget is free again afterwards.
    for (mut rd, mut wr) in held {
        wr.write_all(&body[body.len() - 1..]).await.expect("last byte");
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(30), read_response(&mut rd, &mut buf))
            .await
            .expect("answer")
            .expect("response");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let after = rss_mib(pid);
    println!("RSS after the held uploads completed: {after:.1} MiB");
    let g = send(post(&client(), &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", false))).await;
    assert_eq!(g.status, 200, "the budget is returned: {}", g.text);
}

// === item 7: a refused body and keep-alive ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_leaves_the_body_unread_says_connection_close() {
    let (up, gw) = setup("[limits]\nmax_request_body_bytes = 1024\n").await;
    up.set_default(Reply::json(&chat_json("ok", "gpt-4o")));
    let proxy = addr(&gw.proxy);

    // Declared too large: 413 before reading, `connection: close`, and the gateway closes.
    let mut s = TcpStream::connect(&proxy).await.expect("connect");
    s.write_all(request_head("POST", CHAT, ALICE, "content-length: 4096\r\n").as_bytes()).await.expect("head");
    s.write_all(&[b' '; 512]).await.expect("part of the body");
    let r = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{}", r.head);
    assert!(closed_within(&mut s, Duration::from_secs(5)).await.is_some(), "and it does close");

    // Chunked, found too large while reading.
    let mut s = TcpStream::connect(&proxy).await.expect("connect");
    s.write_all(request_head("POST", CHAT, ALICE, "transfer-encoding: chunked\r\n").as_bytes()).await.expect("head");
    s.write_all(format!("800\r\n{}\r\n", " ".repeat(0x800)).as_bytes()).await.expect("a chunk");
    let r = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{}", r.head);

    // Refused before the body is read (unknown key).
    let mut s = TcpStream::connect(&proxy).await.expect("connect");
    s.write_all(request_head("POST", CHAT, STRANGER, "content-length: 1000\r\n").as_bytes()).await.expect("head");
    let r = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{}", r.head);

    // A body read whole keeps the connection: a 400 and then a 200 on the same socket.
    let mut s = TcpStream::connect(&proxy).await.expect("connect");
    let bad = "{not json";
    s.write_all(
        format!("{}{bad}", request_head("POST", CHAT, ALICE, &format!("content-length: {}\r\n", bad.len()))).as_bytes(),
    )
    .await
    .expect("write");
    let r = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), None, "{}", r.head);
    let ok = chat_body("gpt-4o", false).to_string();
    s.write_all(
        format!("{}{ok}", request_head("POST", CHAT, ALICE, &format!("content-length: {}\r\n", ok.len()))).as_bytes(),
    )
    .await
    .expect("second request on the same connection");
    let r = response_within(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // What a client sees: a keep-alive client's next request after a 413 succeeds.
    let c = client();
    for _ in 0..5 {
        let big = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
        let g = send(post(&c, &gw, CHAT, Auth::Bearer(ALICE), &big)).await;
        assert_openai_error(&g, 413);
        let g = send(post(&c, &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", false))).await;
        assert_eq!(g.status, 200, "{}", g.text);
    }
}

#[test]
fn check_validates_the_new_limits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("policy.toml");
    let text = "[limits]\nmax_request_body_bytes = 8388608\nmax_buffered_request_bytes = 1048576\n\
                idle_timeout_ms = 0\nmax_connections = -5\n\n[levels.normal]\nmax_in_flight = -1\n";
    std::fs::write(&file, text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("run firebreak check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    // Every problem, at its line.
    for (line, what) in [(3, "smaller than max_request_body_bytes"), (4, "positive"), (5, "positive"), (8, "0 or more")]
    {
        assert!(
            text.contains(&format!("policy.toml:{line}: ")) && text.contains(what),
            "line {line} ({what}):\n{text}"
        );
    }
    assert!(text.contains("4 problem(s)"), "{text}");
}

/// The audit's outage: thousands of idle connections took every descriptor, and the admin API with
/// them. Under `ulimit -n 256` the proxy's cap is lowered to fit, and the admin API keeps answering
/// while 300 connections sit on the proxy listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_descriptor_limit_the_proxy_cap_leaves_room_for_the_admin_api() {
    ensure_env();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let u = Upstreams {
        openai_url: "http://127.0.0.1:9",
        openai_env: OPENAI_ENV,
        anthropic_url: "http://127.0.0.1:9",
        anthropic_env: ANTHROPIC_ENV,
    };
    let text = policy(&u, "[limits]\nfirst_byte_timeout_ms = 60000\nidle_timeout_ms = 60000\n");
    std::fs::write(dir.join("policy.toml"), text).expect("policy");
    let gw = common::Gateway::try_spawn_wrapped(dir, &[], &["sh", "-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .unwrap_or_else(|e| panic!("{e}"));
    let log = dir.join("stderr.log");
    let proxy = addr(&gw.proxy);
    let admin = gw.admin.clone();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(stderr.contains("max_connections lowered"), "the cap is lowered to fit 256 descriptors:\n{stderr}");

    // More connections than descriptors: beyond the cap and the kernel's backlog a connect waits
    // for its SYN to be taken, so each is bounded.
    let tries: Vec<_> = (0..300)
        .map(|_| {
            let p = proxy.clone();
            tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(p)).await })
        })
        .collect();
    let mut held = Vec::new();
    for t in tries {
        if let Ok(Ok(s)) = t.await.expect("task") {
            held.push(s);
        }
    }
    assert!(held.len() > 32, "more connections than the cap reach the listener: {}", held.len());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("connection limit reached") {
        assert!(Instant::now() < deadline, "the proxy listener reaches its cap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("{admin}/admin/v1/state"))
        .bearer_auth(common::ADMIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the admin API answers while the proxy listener is full");
    println!(
        "ulimit -n 256: {} connections opened on the proxy listener (cap lowered to 32); admin /admin/v1/state {} in {:?}",
        held.len(),
        resp.status(),
        t.elapsed()
    );
    assert_eq!(resp.status(), 200);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!stderr.contains("Too many open files"), "never out of descriptors:\n{stderr}");
}
