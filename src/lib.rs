//! firebreak: an inline, policy-enforcing reverse proxy for AI traffic.
//!
//! # Layout
//!
//! The request path runs left to right through these modules:
//!
//! - [`config`] — the policy: TOML → validated (every problem with file:line) → compiled [`config::Policy`].
//! - [`protocol`] — wire formats: endpoints, error bodies, SSE framing, request bodies, replies the
//!   gateway writes itself (safe mode, the scripted upstream).
//! - [`proxy`] — the data plane: listener, the phase-by-phase [`proxy`] pipeline, upstream client
//!   (rustls), streaming pump, tool-call filter, rate limits, and errors → responses in one place.
//! - [`circuit`] — circuit breakers per upstream and MCP server: failing targets are refused fast
//!   (or sent to a fallback) and probed until they recover.
//! - [`state`] — the switches: one immutable snapshot in an `ArcSwap`, batches applied all or nothing,
//!   persisted before they are acknowledged.
//! - [`control`] — the admin API over `state`, policy reload and the audit trail.
//! - [`incident`] — triggers over the facts of each request, incidents, containment plans.
//! - [`forensics`] — evidence capture around incidents (redacted rings, the evidence store) and
//!   verifiable forensic bundles.
//! - [`audit`] — the HMAC-chained JSONL trail, its key and its verifier.
//! - [`alerts`] — incidents, lockdowns, audit failures and circuit transitions pushed to the on-call
//!   (signed webhooks, Slack, PagerDuty, OTLP logs) from queues that never block traffic; anomalies.
//! - [`metrics`], [`telemetry`] — Prometheus text, tracing logs, OpenTelemetry export.
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
pub mod forensics;
pub mod incident;
pub mod inspect;
pub mod mcp;
pub mod metrics;
pub mod protocol;
pub mod proxy;
pub mod replay;
pub mod rules;
pub mod state;
pub mod telemetry;
