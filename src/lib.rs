//! firebreak: an inline, policy-enforcing reverse proxy for AI traffic.
//!
//! # Layout
//!
//! The top-level modules are layered: each uses only modules listed before it, so the module graph
//! has no cycle (`tests/module_graph.rs` checks it). Lowest first:
//!
//! - [`protocol`] — wire formats: endpoints, error bodies, SSE framing, request bodies, replies the
//!   gateway writes itself (safe mode, the scripted upstream).
//! - [`rules`] — every rule id ([`rules::Rule`]) and what a decision did ([`rules::Verdict`]), typed.
//! - [`inspect`] — the inspection engine: scanner, redaction, egress, injection signatures.
//! - [`metrics`] — Prometheus counters and text.
//! - [`config`] — the policy: TOML → validated (every problem with file:line) → compiled [`config::Policy`].
//! - [`state`] — the switches: one immutable snapshot in an `ArcSwap`, batches applied all or nothing,
//!   persisted before they are acknowledged.
//! - [`telemetry`] — tracing logs, OpenTelemetry export.
//! - [`audit`] — the HMAC-chained JSONL trail, its key and its verifier.
//! - [`circuit`] — circuit breakers per upstream and MCP server: failing targets are refused fast
//!   (or sent to a fallback) and probed until they recover.
//! - [`facts`] — the typed record of one exchange (AI or MCP): the audit record and the incident
//!   engine's input are derived from it.
//! - [`http`] — HTTP plumbing shared by both surfaces and the admin API: bodies and the one request
//!   body reader, errors → responses, admission, the identity phase, the client's facts, outbound
//!   clients and TLS, listener TLS, the scripted upstream.
//! - [`incident`] — triggers over the facts of each request, incidents, containment plans.
//! - [`forensics`] — evidence capture around incidents (redacted rings, the evidence store) and
//!   verifiable forensic bundles.
//! - [`alerts`] — incidents, lockdowns, audit failures and circuit transitions pushed to the on-call
//!   (signed webhooks, Slack, PagerDuty, OTLP logs) from queues that never block traffic; anomalies.
//! - [`gateway`] — the shared runtime under both surfaces: [`gateway::Gateway`] (policy in force,
//!   switches, audit, metrics, incidents, breakers, rate limits, MCP session bindings), reload, and
//!   the alerts wired to it.
//! - [`proxy`] — the AI surface: the phase-by-phase pipeline, decisions, the upstream call, the
//!   streaming pump, the tool-call filter.
//! - [`mcp`] — the MCP surface (`/mcp/<server>`).
//! - [`server`] — listeners, shards, connection limits, and the routing of each request to
//!   [`proxy`] or [`mcp`].
//! - [`control`] — the admin API and console over `state`, policy reload and the audit trail.
//! - [`replay`] — remediation validation: attack suites run offline (in-process) or online.
//! - [`cli`] — the `firebreak` subcommands.
//!
//! See `docs/ARCHITECTURE.md` for the phases drawn out.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::dbg_macro, clippy::todo))]

pub mod alerts;
pub mod audit;
pub mod circuit;
pub mod cli;
pub mod config;
pub mod control;
pub mod facts;
pub mod fleet;
pub mod forensics;
pub mod gateway;
pub mod http;
pub mod incident;
pub mod inspect;
pub mod mcp;
pub mod metrics;
pub mod protocol;
pub mod proxy;
pub mod replay;
pub mod rules;
pub mod server;
pub mod state;
pub mod telemetry;
