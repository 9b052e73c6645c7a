//! The proxy's shards (`--worker-threads N`): connections spread over N single-threaded runtimes.
//! What a user must not notice: a switch flip reaches the streams of every shard, every shard
//! serves after it, and shutdown drains them all.

mod common;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use upstream::gw::*;
use upstream::*;

const CHAT: &str = "/v1/chat/completions";
const SHARDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_ends_the_streams_of_every_shard_and_every_shard_serves_after_it() {
    let (up, gw) = setup_with_env("", &[("FIREBREAK_WORKER_THREADS", "3")]).await;
    assert!(gw.stderr().contains("shards=3"), "the start-up line names the shard count:\n{}", gw.stderr());

    // Two streams per shard: each on its own connection, and the acceptor hands a new connection
    // to the shard with the fewest open ones.
    let events: Vec<String> =
        parse_sse(&chat_sse(&["one ", "two ", "three"], "gpt-4o")).into_iter().map(|e| e.raw).collect();
    let release = Arc::new(tokio::sync::Notify::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut streams = Vec::new();
    for _ in 0..2 * SHARDS {
        up.push(Reply::sse_chunks(events.clone()).with_gate(0, release.clone()));
        let resp =
            post(&client(), &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", true)).send().await.expect("stream");
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while buf.len() < events[0].len() {
            let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("first event in time");
            buf.extend_from_slice(&chunk.expect("more body").expect("chunk"));
        }
        streams.push((stream, buf));
    }

    flip(&gw, json!([{"action": "set_level", "level": "lockdown"}])).await;
    for (i, (mut stream, mut buf)) in streams.into_iter().enumerate() {
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await.expect("every stream ends within the deadline")
            {
                None => break,
                Some(c) => buf.extend_from_slice(&c.expect("a clean end, not a torn connection")),
            }
        }
        let got = parse_sse(&String::from_utf8_lossy(&buf));
        assert_eq!(got.len(), 2, "stream {i}: the first event, then the terminal error: {got:#?}");
        assert!(got[1].json().expect("error JSON")["error"]["message"].is_string());
    }
    for _ in 0..2 * SHARDS {
        release.notify_one();
    }

    // Refused on every connection while locked down, served on every one after.
    let clients: Vec<reqwest::Client> = (0..2 * SHARDS).map(|_| client()).collect();
    for c in &clients {
        let g = send(post(c, &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", false))).await;
        assert_openai_error(&g, 503);
    }
    flip(&gw, json!([{"action": "set_level", "level": "normal"}])).await;
    let before = up.count();
    for c in &clients {
        let g = send(post(c, &gw, CHAT, Auth::Bearer(ALICE), &chat_body("gpt-4o", false))).await;
        assert_eq!(g.status, 200, "{}", g.text);
    }
    assert_eq!(up.count(), before + 2 * SHARDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_out_of_range_is_refused_at_start() {
    ensure_env();
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.toml"), "").expect("policy");
    let err = tokio::task::block_in_place(|| {
        common::Gateway::try_spawn_with_env(tmp.path(), &[("FIREBREAK_WORKER_THREADS", "0")])
    })
    .err()
    .expect("0 shards is refused");
    assert!(err.contains("worker-threads") || err.contains("WORKER_THREADS"), "{err}");
}
