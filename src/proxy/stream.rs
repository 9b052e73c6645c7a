//! The response-body phase for streams: a pump task reads the upstream's SSE, frames it into events,
//! runs each through the tool-call filter, and forwards it. It also listens to the switches: when a
//! new snapshot refuses this stream's principal, session or endpoint, the stream ends at once with a
//! terminal error event in the provider's format (never a torn connection).

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::body::Body;
use super::toolcalls::{EventAction, StreamFilter};
use super::Gateway;
use crate::audit::Record;
use crate::config::{KeyEntry, Policy};
use crate::inspect::redact::{LinkGuard, Redacted, StreamRedactor};
use crate::protocol::sse::SseFramer;
use crate::protocol::{error_event, Endpoint, ErrorKind};
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
    /// Session.
    pub session: Option<String>,
    /// Request id (for audit).
    pub request_id: String,
    /// Upstream name (for messages).
    pub upstream: String,
    /// Concurrency permit, held for the stream's life.
    pub permit: Option<OwnedSemaphorePermit>,
}

enum End {
    Done,
    ClientGone,
    Cut(&'static str, String),
    Broken(String),
}

/// Starts the pump; the returned sender side is owned by the task.
pub fn spawn(ctx: StreamCtx, upstream: Body, tx: mpsc::Sender<Bytes>) {
    let switches = ctx.gw.state.subscribe();
    tokio::spawn(pump(ctx, upstream, tx, switches));
}

async fn pump(
    ctx: StreamCtx,
    mut upstream: Body,
    tx: mpsc::Sender<Bytes>,
    mut switches: watch::Receiver<Arc<Snapshot>>,
) {
    let limits = &ctx.policy.limits;
    let mut framer = SseFramer::new(limits.max_response_body);
    let guard = link_guard(&ctx.policy, switches.borrow().clone());
    let mut filter = Inspect {
        tools: StreamFilter::new(ctx.endpoint, limits.max_response_body),
        redact: StreamRedactor::new(ctx.endpoint)
            .with_links(guard)
            .with_prompts(ctx.policy.prompts.clone())
            .with_tenants(ctx.policy.tenants.clone()),
    };
    let mut snap = switches.borrow_and_update().clone();
    // The end (or failure) of the upstream body, met while batching frames: handled next, first.
    let mut early: Option<Option<Result<http_body::Frame<Bytes>, super::body::BoxError>>> = None;
    // A switch flipped after the request was decided but before the pump started still counts.
    let mut check = true;
    let end = 'outer: loop {
        if std::mem::take(&mut check) {
            if let Some(r) = snap.refusal(&ctx.key, ctx.endpoint, ctx.session.as_deref(), unix_now()) {
                break End::Cut(r.rule(), refusal_text(r));
            }
        }
        let frame = match early.take() {
            Some(f) => Ok(f),
            None => tokio::select! {
                biased;
                changed = switches.changed() => {
                    if changed.is_err() {
                        break End::Broken("the gateway is shutting down".into());
                    }
                    snap = switches.borrow_and_update().clone();
                    check = true;
                    continue;
                }
                frame = tokio::time::timeout(limits.stream_idle_timeout, upstream.frame()) => frame,
            },
        };
        let frame = match frame {
            Err(_) => {
                break End::Broken(format!(
                    "upstream `{}` sent nothing for {} s",
                    ctx.upstream,
                    limits.stream_idle_timeout.as_secs()
                ))
            }
            Ok(None) => {
                break match framer.finish() {
                    Ok(None) => End::Done,
                    Ok(Some(last)) => {
                        let mut batch = bytes::BytesMut::new();
                        let framed = filtered(last, &mut filter, &ctx, &snap, &mut batch);
                        if !batch.is_empty() && tx.send(batch.freeze()).await.is_err() {
                            End::ClientGone
                        } else {
                            framed.map_or_else(End::Broken, |()| End::Done)
                        }
                    }
                    Err(e) => End::Broken(e.to_string()),
                };
            }
            Ok(Some(Err(e))) => break End::Broken(format!("upstream stream failed: {e}")),
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
                let _ = tx.send(batch.freeze()).await;
            }
            break 'outer End::Broken(e);
        }
        if !batch.is_empty() && tx.send(batch.freeze()).await.is_err() {
            break 'outer End::ClientGone;
        }
    };
    let gw = &ctx.gw;
    let scanner = &ctx.policy.scanner;
    if matches!(end, End::Done | End::Broken(_)) {
        // Text still held when the upstream ended (or broke off) without its closing events goes out
        // redacted; a stream cut by a switch releases nothing more.
        let rest = filter.redact.finish(scanner);
        if !rest.is_empty() {
            let mut batch = bytes::BytesMut::new();
            rest.iter().for_each(|e| batch.extend_from_slice(e));
            let _ = tx.send(batch.freeze()).await;
        }
    }
    record_redactions(&ctx, scanner, filter.redact.found()).await;
    let fragments = filter.redact.prompt_fragments();
    if fragments > 0 {
        gw.metrics.decisions_n("prompt.fragment", "detect", fragments as u64);
        let rec = base_record(&ctx, "prompt_fragments").with("rule", "prompt.fragment").with("count", fragments);
        crate::incident::audited(gw, rec).await;
    }
    if filter.redact.links() > 0 {
        gw.metrics.decisions_n("egress.markdown_link", "neutralize", filter.redact.links() as u64);
        gw.audit
            .record(
                base_record(&ctx, "links_neutralized")
                    .with("rule", "egress.markdown_link")
                    .with("count", filter.redact.links()),
            )
            .await;
    }
    // Incident facts (names only): other tenants' identifiers and data tool calls the client received.
    let leaked = filter.redact.cross_tenant(&ctx.key.tenant);
    if !leaked.is_empty() {
        gw.metrics.decision("tenants.cross_tenant", "detect");
        let rec = base_record(&ctx, "cross_tenant").with("rule", "tenants.cross_tenant").with("cross_tenant", leaked);
        crate::incident::audited(gw, rec).await;
    }
    if !filter.tools.data_calls.is_empty() {
        let calls = std::mem::take(&mut filter.tools.data_calls);
        crate::incident::audited(gw, base_record(&ctx, "data_tool_calls").with("data_tool_calls", calls)).await;
    }
    for r in filter.tools.refused.drain(..) {
        gw.metrics.decision(r.why.rule, "block");
        let rec = base_record(&ctx, "tool_call_refused")
            .with("rule", r.why.rule)
            .with("tool", r.tool)
            .with("detail", r.why.detail);
        crate::incident::audited(gw, rec).await;
    }
    match end {
        End::Done | End::ClientGone => {}
        End::Cut(rule, msg) => {
            let _ = tx.send(error_event(ctx.endpoint, ErrorKind::Permission, &msg, "stream_terminated")).await;
            gw.metrics.stream_terminated();
            gw.metrics.decision(rule, "terminate_stream");
            gw.audit.record(base_record(&ctx, "stream_terminated").with("rule", rule)).await;
        }
        End::Broken(detail) => {
            let msg = format!("the upstream stream from `{}` broke off: {detail}", ctx.upstream);
            let _ = tx.send(error_event(ctx.endpoint, ErrorKind::Api, &msg, "upstream_stream_error")).await;
            gw.metrics.decision("upstream.broken_stream", "error");
            gw.audit
                .record(base_record(&ctx, "stream_error").with("rule", "upstream.broken_stream").with("detail", detail))
                .await;
        }
    }
    drop(ctx.permit);
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

/// Counts and audits what was redacted: rule ids and counts, never the text.
pub(super) async fn record_redactions(ctx: &StreamCtx, scanner: &crate::inspect::Scanner, found: &[u16]) {
    if found.is_empty() {
        return;
    }
    let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for &r in found {
        *counts.entry(scanner.rule(r).id.as_str()).or_default() += 1;
    }
    for (id, n) in &counts {
        ctx.gw.metrics.decisions_n(id, "redact", *n);
    }
    let rules = serde_json::to_value(&counts).unwrap_or_default();
    crate::incident::audited(
        &ctx.gw,
        base_record(ctx, "redaction").with("rule", "redaction").with("redactions", rules),
    )
    .await;
}

fn base_record(ctx: &StreamCtx, event: &str) -> Record {
    Record::new("request")
        .with("event", event)
        .with("request_id", ctx.request_id.as_str())
        .with("endpoint", ctx.endpoint.name())
        .with("key_id", ctx.key.id.as_str())
        .with("tenant", ctx.key.tenant.as_str())
        .with("user", ctx.key.user.as_str())
        .with_opt("session", ctx.session.as_deref())
}

fn refusal_text(r: crate::state::Refusal) -> String {
    format!("stream terminated by the gateway operator ({})", super::error::GatewayError::Refused(r))
}
