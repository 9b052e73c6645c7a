//! The response-body phase for streams: a pump task reads the upstream's SSE, frames it into events,
//! checks that each is SSE, runs it through the tool-call filter and the redactor, and forwards it. It
//! also listens to the switches: when a new snapshot refuses this stream's principal, session or
//! endpoint, the stream ends at once with a terminal error event in the provider's format (never a
//! torn connection). A stream the upstream breaks — or ends without the format's terminal event —
//! ends with an error event too, so SDKs raise instead of returning a truncated answer as whole. The
//! pump ends the request's bookkeeping: it stays in flight until then, and its one audit record is
//! written then, with what the inspection found.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};

use crate::config::{KeyEntry, Policy};
use crate::facts::{Decision, Facts, StreamEnd};
use crate::forensics::kept;
use crate::gateway::exchange::Finish;
use crate::gateway::Gateway;
use crate::http::body::Body;
use crate::inspect::redact::{LinkGuard, Redacted, StreamRedactor};
use crate::inspect::toolcalls::{EventAction, StreamFilter};
use crate::protocol::sse::SseFramer;
use crate::protocol::{error_event, Endpoint, ErrorKind};
use crate::rules::{Rule, Verdict};
use crate::state::{unix_now, Snapshot};

/// Everything the pump needs to know about its request.
pub struct StreamCtx {
    /// Gateway (audit, metrics).
    pub gw: Arc<Gateway>,
    /// The policy the request was decided with.
    pub policy: Arc<Policy>,
    /// The principal.
    pub key: Arc<KeyEntry>,
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Upstream name (for messages).
    pub upstream: String,
    /// Concurrency permit, held for the stream's life.
    pub permit: Option<crate::gateway::Permit>,
    /// The request's payloads, kept only while `[forensics]` is on: the bytes the client is sent
    /// are added to it (bounded) and it is captured with the stream's audit record.
    pub capture: Option<crate::forensics::Capture>,
}

enum PumpEnd {
    Done,
    ClientGone,
    Cut(Rule, String),
    Broken(String),
    /// The gateway is shutting down and the drain time is up.
    Closing,
}

/// A stream whose response head is decided, waiting for the request path's log phase to hand over
/// the request's audit record.
pub struct Pending {
    /// What the pump needs to know.
    pub ctx: StreamCtx,
    /// The upstream's body.
    pub upstream: Body,
    /// The client body's sending side.
    pub tx: mpsc::Sender<Bytes>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("upstream", &self.ctx.upstream).finish_non_exhaustive()
    }
}

/// Starts the pump. The request stays in flight and its `facts` are completed with what the
/// stream's inspection found and finished once (`exchange::finish`: one audit record), when the
/// stream ends — complete, cut, broken, or abandoned by the client.
pub(crate) fn spawn(p: Pending, facts: Facts, done: Finish) {
    let switches = p.ctx.gw.state.subscribe();
    tokio::spawn(pump(p.ctx, p.upstream, p.tx, switches, facts, done));
}

async fn pump(
    mut ctx: StreamCtx,
    mut upstream: Body,
    tx: mpsc::Sender<Bytes>,
    mut switches: watch::Receiver<Arc<Snapshot>>,
    mut facts: Facts,
    mut done: Finish,
) {
    let mut capture = ctx.capture.take();
    let limits = &ctx.policy.limits;
    let mut framer = SseFramer::new(limits.max_response_body);
    let guard = link_guard(&ctx.policy, switches.borrow().clone());
    let mut filter = Inspect {
        tools: StreamFilter::new(ctx.endpoint, limits.max_response_body),
        redact: StreamRedactor::new(ctx.endpoint)
            .with_links(guard)
            .with_prompts(ctx.policy.prompts.clone())
            .with_tenants(ctx.policy.tenants.clone()),
        terminal: false,
        found: Vec::new(),
    };
    let mut snap = switches.borrow_and_update().clone();
    let closed = ctx.gw.closed();
    tokio::pin!(closed);
    // The end (or failure) of the upstream body, met while batching frames: handled next, first.
    let mut early: Option<Option<Result<http_body::Frame<Bytes>, crate::http::body::BoxError>>> = None;
    // A switch flipped after the request was decided but before the pump started still counts.
    let mut check = true;
    let end = 'outer: loop {
        if std::mem::take(&mut check) {
            if let Some(r) = snap.refusal(&ctx.key, ctx.endpoint, facts.session.as_deref(), unix_now()) {
                break PumpEnd::Cut(r.rule(), refusal_text(r));
            }
        }
        let frame = match early.take() {
            Some(f) => Ok(f),
            None => tokio::select! {
                biased;
                changed = switches.changed() => {
                    if changed.is_err() {
                        break PumpEnd::Broken("the gateway is shutting down".into());
                    }
                    snap = switches.borrow_and_update().clone();
                    check = true;
                    continue;
                }
                () = &mut closed => break PumpEnd::Closing,
                // A client that went away ends the stream now, not at the provider's next event.
                () = tx.closed() => break PumpEnd::ClientGone,
                frame = tokio::time::timeout(limits.stream_idle_timeout, upstream.frame()) => frame,
            },
        };
        let frame = match frame {
            Err(_) => {
                break PumpEnd::Broken(format!(
                    "upstream `{}` sent nothing for {} s",
                    ctx.upstream,
                    limits.stream_idle_timeout.as_secs()
                ))
            }
            Ok(None) => {
                break match framer.finish() {
                    Ok(None) => end_of(&filter),
                    Ok(Some(last)) => {
                        let mut batch = bytes::BytesMut::new();
                        let framed = filtered(last, &mut filter, &ctx, &snap, &mut batch);
                        if !batch.is_empty() && tx.send(kept(&mut capture, batch.freeze())).await.is_err() {
                            PumpEnd::ClientGone
                        } else {
                            framed.map_or_else(PumpEnd::Broken, |()| end_of(&filter))
                        }
                    }
                    Err(e) => PumpEnd::Broken(e.to_string()),
                };
            }
            Ok(Some(Err(e))) => break PumpEnd::Broken(format!("upstream stream failed: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        framer.push(&data);
        // Every complete event of this read, and of the frames the upstream body already holds
        // (one socket read often carries many events), goes out as one frame: one write, not
        // one per event. Draining stops at once when a switch changed, so a cut is not delayed.
        let mut batch = bytes::BytesMut::new();
        let mut framed = drain_events(&mut framer, &mut filter, &ctx, &snap, &mut batch);
        let mut yielded = false;
        while framed.is_ok() && batch.len() < BATCH_MAX && !switches.has_changed().unwrap_or(true) {
            match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut upstream).poll_frame(cx))).await {
                // hyper's client hands a body over one chunk at a time from its connection task: let
                // that task run once (it was just woken) before deciding that nothing more is there.
                Poll::Pending if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Poll::Pending => break,
                Poll::Ready(Some(Ok(f))) => {
                    yielded = false;
                    if let Ok(data) = f.into_data() {
                        framer.push(&data);
                        framed = drain_events(&mut framer, &mut filter, &ctx, &snap, &mut batch);
                    }
                }
                Poll::Ready(end_or_error) => {
                    early = Some(end_or_error);
                    break;
                }
            }
        }
        if let Err(e) = framed {
            if !batch.is_empty() {
                let _ = tx.send(kept(&mut capture, batch.freeze())).await;
            }
            break 'outer PumpEnd::Broken(e);
        }
        if !batch.is_empty() && tx.send(kept(&mut capture, batch.freeze())).await.is_err() {
            break 'outer PumpEnd::ClientGone;
        }
    };
    let gw = &ctx.gw;
    let scanner = &ctx.policy.scanner;
    if matches!(end, PumpEnd::Done | PumpEnd::Broken(_)) {
        // Text still held when the upstream ended (or broke off) without its closing events goes out
        // redacted; a stream cut by a switch releases nothing more.
        let rest = filter.redact.finish(scanner);
        if !rest.is_empty() {
            let mut batch = bytes::BytesMut::new();
            rest.iter().for_each(|e| batch.extend_from_slice(e));
            let _ = tx.send(kept(&mut capture, batch.freeze())).await;
        }
    }
    // What the stream's inspection found goes into the request's facts, so into its one audit
    // record (rule ids, counts and tool names, never the text), and into the metrics.
    let before = facts.decisions.len();
    let mut found = std::mem::take(&mut filter.found);
    found.extend_from_slice(filter.redact.found());
    let mut redactions = std::collections::BTreeMap::<&str, u64>::new();
    for &r in &found {
        *redactions.entry(scanner.rule(r).id.as_str()).or_default() += 1;
    }
    for (id, n) in &redactions {
        gw.metrics.decisions_n(id, "redact", *n);
    }
    facts.count_redactions(scanner, &found);
    let mut end_facts = StreamEnd::default();
    let fragments = filter.redact.prompt_fragments();
    if fragments > 0 {
        gw.metrics.rule_n(Rule::PromptFragment, "detect", fragments as u64);
        facts.decide(Rule::PromptFragment, Verdict::Detect);
        facts.prompt_fragments = fragments as u64;
    }
    end_facts.links = filter.redact.links();
    if end_facts.links > 0 {
        gw.metrics.rule_n(Rule::EgressMarkdownLink, "neutralize", end_facts.links as u64);
        facts.decide(Rule::EgressMarkdownLink, Verdict::Neutralize);
    }
    // Incident facts (names only): other tenants' identifiers and data tool calls the client received.
    let cross_tenant = filter.redact.cross_tenant(&ctx.key.tenant);
    if !cross_tenant.is_empty() {
        gw.metrics.rule_n(Rule::TenantsCrossTenant, "detect", 1);
        facts.decide(Rule::TenantsCrossTenant, Verdict::Detect);
        facts.cross_tenant = cross_tenant;
    }
    let data_calls = std::mem::take(&mut filter.tools.data_calls);
    if !data_calls.is_empty() {
        facts.data_tool_calls = data_calls;
    }
    for r in filter.tools.refused.drain(..) {
        gw.metrics.decision(r.why.rule.as_str(), "block");
        facts.decisions.push(Decision { rule: r.why.rule.into(), action: Verdict::Block });
        end_facts.refused.push(crate::audit::client_text(&ctx.policy.scanner, &r.tool));
    }
    end_facts.end = match end {
        PumpEnd::Done => "complete",
        PumpEnd::ClientGone => "client_gone",
        PumpEnd::Closing => {
            let e = crate::http::error::GatewayError::ShuttingDown;
            let _ = tx.send(kept(&mut capture, error_event(ctx.endpoint, e.kind(), &e.to_string(), e.code()))).await;
            gw.metrics.decision(e.reason().as_str(), "terminate_stream");
            facts.decisions.push(Decision { rule: e.reason().into(), action: Verdict::TerminateStream });
            "shutdown"
        }
        PumpEnd::Cut(rule, msg) => {
            let _ = tx
                .send(kept(&mut capture, error_event(ctx.endpoint, ErrorKind::Permission, &msg, "stream_terminated")))
                .await;
            gw.metrics.stream_terminated();
            gw.metrics.rule_n(rule, "terminate_stream", 1);
            facts.decisions.push(Decision { rule: rule.into(), action: Verdict::TerminateStream });
            "terminated"
        }
        PumpEnd::Broken(detail) => {
            let msg = format!("the upstream stream from `{}` broke off: {detail}", ctx.upstream);
            let _ = tx
                .send(kept(&mut capture, error_event(ctx.endpoint, ErrorKind::Api, &msg, "upstream_stream_error")))
                .await;
            gw.metrics.rule_n(Rule::UpstreamBrokenStream, "error", 1);
            facts.decide(Rule::UpstreamBrokenStream, Verdict::Error);
            facts.detail = Some(detail);
            "error"
        }
    };
    // The stream's decisions replace the request's lone `allow`.
    if facts.decisions.len() > before && facts.decisions[..before].iter().all(|d| d.action == Verdict::Allow) {
        facts.decisions.drain(..before);
    }
    facts.stream_end = Some(end_facts);
    // Finished before the body ends, so that a containment plan it fires is in force when the
    // client's stream is over; the request counts as in flight until then.
    done.capture = capture;
    done.permit = ctx.permit.take();
    // Boxed: awaited inline, its state would make every stream's task larger for the stream's whole life.
    Box::pin(crate::gateway::exchange::finish(gw, &ctx.policy, &facts, done)).await;
    drop(tx);
}

/// How a stream the upstream ended cleanly ends for the client: complete when its terminal event
/// came, otherwise broken (an error event, so that SDKs raise instead of returning a truncated
/// answer as if it were whole).
fn end_of(insp: &Inspect) -> PumpEnd {
    if insp.terminal {
        PumpEnd::Done
    } else {
        PumpEnd::Broken("the stream ended without its terminal event".into())
    }
}

/// Largest batch of events sent as one frame.
const BATCH_MAX: usize = 64 << 10;

/// Runs every complete event the framer holds through the filters into `batch`.
fn drain_events(
    framer: &mut SseFramer,
    filter: &mut Inspect,
    ctx: &StreamCtx,
    snap: &Snapshot,
    batch: &mut bytes::BytesMut,
) -> Result<(), String> {
    while let Some(event) = framer.next_event().map_err(|e| e.to_string())? {
        filtered(event, filter, ctx, snap, batch)?;
    }
    Ok(())
}

/// The link guard for a response: the policy's egress rules and the egress switches of `snap`.
pub(super) fn link_guard(policy: &Policy, snap: Arc<Snapshot>) -> LinkGuard {
    LinkGuard { rules: policy.egress.clone(), blocked: Arc::new(move |h: &str| snap.egress_blocked(h, unix_now())) }
}

/// Per-stream inspection state.
struct Inspect {
    tools: StreamFilter,
    redact: StreamRedactor,
    /// The upstream sent the event that ends a complete stream (or its own error event).
    terminal: bool,
    /// Rules that matched in SSE lines other than `data` (comments, names, ids).
    found: Vec<u16>,
}

/// Whether `raw` ends a complete stream of `endpoint`: `data: [DONE]` (chat), `message_stop`
/// (Anthropic), `response.completed` / `.incomplete` / `.failed` (Responses), or the provider's own
/// error event, which ends a stream too. A substring test first: most events are not looked at.
fn is_terminal(endpoint: Endpoint, raw: &[u8]) -> bool {
    use crate::inspect::needle::Needle;
    static DONE: Needle = Needle::new(b"[DONE]");
    static ERROR: Needle = Needle::new(b"error");
    static STOP: Needle = Needle::new(b"message_stop");
    static COMPLETED: Needle = Needle::new(b"response.completed");
    static INCOMPLETE: Needle = Needle::new(b"response.incomplete");
    static FAILED: Needle = Needle::new(b"response.failed");
    let ev = || crate::protocol::sse::parse_event(raw);
    let json_type = |data: Option<&str>| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(data?).ok()?;
        if v.get("error").is_some_and(serde_json::Value::is_object) && endpoint == Endpoint::ChatCompletions {
            return Some("error".into());
        }
        v.get("type").and_then(serde_json::Value::as_str).map(str::to_owned)
    };
    let terminal_type = |ends: &[&str]| {
        let e = ev();
        e.name.is_some_and(|n| ends.contains(&n))
            || json_type(e.data.as_deref()).is_some_and(|t| ends.contains(&t.as_str()))
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            (DONE.is_in(raw) && ev().data.is_some_and(|d| d.trim() == "[DONE]"))
                || (ERROR.is_in(raw) && json_type(ev().data.as_deref()).as_deref() == Some("error"))
        }
        Endpoint::Messages => (STOP.is_in(raw) || ERROR.is_in(raw)) && terminal_type(&["message_stop", "error"]),
        Endpoint::Responses => {
            [&COMPLETED, &INCOMPLETE, &FAILED, &ERROR].iter().any(|n| n.is_in(raw))
                && terminal_type(&["response.completed", "response.incomplete", "response.failed", "error"])
        }
        Endpoint::Embeddings | Endpoint::Models => true,
    }
}

/// `raw` as an SSE event a client may be given: every line empty, a comment, or one of the fields
/// `data`, `event`, `id`, `retry`, in UTF-8. Anything else is not SSE (an HTML error page, a bare
/// JSON body, binary) and ends the stream. The lines other than `data` (the redactor's) reach the
/// client as they are, so their text is scanned too: one with a finding is redacted whole.
fn wire_checked(raw: Bytes, scanner: &crate::inspect::Scanner, found: &mut Vec<u16>) -> Result<Bytes, String> {
    let Ok(text) = std::str::from_utf8(&raw) else {
        return Err("the upstream sent bytes that are not UTF-8".into());
    };
    let mut dirty = false;
    for line in crate::protocol::sse::lines(&raw).filter(|l| !l.is_empty()) {
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {}
            // `value` is cut from valid UTF-8 at an ASCII byte; were it not valid, it counts as dirty.
            b"" | b"event" | b"id" | b"retry" => {
                dirty |= !value.is_empty() && std::str::from_utf8(value).map_or(true, |v| !scanner.scan(v).is_empty())
            }
            // The line itself is never echoed: it may hold anything.
            _ => return Err("the upstream sent a line that is not an SSE field".into()),
        }
    }
    if !dirty {
        return Ok(raw);
    }
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("data") {
            out.push_str(line);
        } else {
            let (red, f) = scanner.redact(line);
            found.extend(f.iter().map(|f| f.rule));
            out.push_str(&red);
        }
    }
    Ok(Bytes::from(out))
}

/// Runs one event through the tool-call filter, then redaction, and appends what remains to `out`;
/// an event that cannot be inspected ends the stream (its text is not sent).
fn filtered(
    event: Bytes,
    insp: &mut Inspect,
    ctx: &StreamCtx,
    snap: &Snapshot,
    out: &mut bytes::BytesMut,
) -> Result<(), String> {
    let check = super::decide::CallPolicy { policy: &ctx.policy, snap, role: &ctx.key.role, now: unix_now() };
    let scanner = &ctx.policy.scanner;
    let event = wire_checked(event, scanner, &mut insp.found)?;
    insp.terminal |= is_terminal(ctx.endpoint, &event);
    let mut redact = |e: &Bytes, out: &mut bytes::BytesMut| match insp.redact.on_event(scanner, e) {
        Redacted::Same => {
            out.extend_from_slice(e);
            Ok(())
        }
        Redacted::Events(v) => {
            v.iter().for_each(|e| out.extend_from_slice(e));
            Ok(())
        }
        Redacted::Uninspectable(why) => Err(format!("the gateway cannot inspect it: {why}")),
    };
    match insp.tools.on_event(&event, &check) {
        EventAction::Forward => redact(&event, out),
        EventAction::Drop => Ok(()),
        EventAction::Replace(events) => events.iter().try_for_each(|e| redact(e, out)),
    }
}

fn refusal_text(r: crate::state::Refusal) -> String {
    format!("stream terminated by the gateway operator ({})", crate::http::error::GatewayError::Refused(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream's pump task lives as long as the stream, so the size of its future is memory held
    /// per open stream (the load bench's 1,000 slow streams). The incident and fleet paths that
    /// finishing an exchange may take are boxed (`gateway::incidents::audited`, and `finish` here):
    /// awaited inline they made this future 18 KB. The bound leaves room to grow, not for them.
    #[tokio::test]
    async fn the_task_of_an_open_stream_stays_small() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut policy =
            crate::config::load_str(crate::config::DEMO_NAME, crate::config::DEMO_POLICY, std::path::Path::new("."))
                .expect("demo policy");
        policy.storage.state_file = dir.path().join("state.json");
        policy.storage.audit_file = dir.path().join("audit.jsonl");
        let gw =
            Gateway::start(policy, crate::gateway::PolicySource::Demo, Arc::new(crate::metrics::Metrics::default()))
                .await
                .expect("gateway starts");
        let policy = gw.policy();
        let key = policy.keys.values().next().expect("the demo policy has keys").clone();
        let (tx, _rx) = mpsc::channel(1);
        let ctx = StreamCtx {
            gw: gw.clone(),
            policy: policy.clone(),
            key,
            endpoint: Endpoint::ChatCompletions,
            upstream: "scripted".into(),
            permit: None,
            capture: None,
        };
        let facts = Facts::new(crate::facts::Shape::AiRequest, "req".into(), std::time::Instant::now());
        let fut = pump(ctx, crate::http::body::full(Bytes::new()), tx, gw.state.subscribe(), facts, Finish::default());
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 6 * 1024, "the pump's future is {size} bytes: something large is awaited inline");
    }
}
