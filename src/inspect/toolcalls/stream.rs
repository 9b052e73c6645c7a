//! The per-stream state of the tool-call filter: calls held until complete (bounded by `max_held`
//! bytes per stream), then released whole or replaced by a notice. The per-format event handling is
//! in `crate::inspect::format::*::toolcalls`.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{notice, too_large, CallCheck, RefusedCall};
use crate::inspect::format::chat::toolcalls::ChatCall;
use crate::protocol::Endpoint;

/// What to do with one upstream SSE event.
#[derive(Debug, PartialEq, Eq)]
pub enum EventAction {
    /// Forward unchanged.
    Forward,
    /// Drop it (held, or part of a refused call).
    Drop,
    /// Send these events instead.
    Replace(Vec<Bytes>),
}

/// A held Anthropic tool_use block or Responses function_call item.
#[derive(Debug, Default)]
pub(in crate::inspect) struct HeldCall {
    pub(in crate::inspect) name: String,
    pub(in crate::inspect) args: String,
    pub(in crate::inspect) events: Vec<Bytes>,
    /// Refused by name: its events are dropped, the notice was sent already.
    pub(in crate::inspect) refused: bool,
}

/// Per-stream state of the streaming tool-call filter. Memory is bounded by `max_held` per stream.
#[derive(Debug)]
pub struct StreamFilter {
    endpoint: Endpoint,
    pub(in crate::inspect) max_held: usize,
    pub(in crate::inspect) held_bytes: usize,
    /// Chat: per choice, the calls being assembled, by their upstream index.
    pub(in crate::inspect) chat: BTreeMap<u64, BTreeMap<u64, ChatCall>>,
    /// Chat: the envelope (id, model, …) of the last chunk, for the chunk that releases calls.
    pub(in crate::inspect) envelope: Map<String, Value>,
    /// Anthropic (by block index) and Responses (by output index): held calls.
    pub(in crate::inspect) held: HashMap<u64, HeldCall>,
    pub(in crate::inspect) allowed_calls: usize,
    /// Calls refused so far.
    pub refused: Vec<RefusedCall>,
    /// Calls to data tools released to the client so far, by tool name.
    pub data_calls: Vec<String>,
}

impl StreamFilter {
    /// A filter for a stream of `endpoint`, holding at most `max_held` bytes of calls.
    pub fn new(endpoint: Endpoint, max_held: usize) -> Self {
        StreamFilter {
            endpoint,
            max_held,
            held_bytes: 0,
            chat: BTreeMap::new(),
            envelope: Map::new(),
            held: HashMap::new(),
            allowed_calls: 0,
            refused: Vec::new(),
            data_calls: Vec::new(),
        }
    }

    /// Decides on one raw event. Events that cannot concern a tool call are recognised without
    /// parsing (a substring test), so plain text streams pay almost nothing.
    pub fn on_event(&mut self, raw: &[u8], check: &dyn CallCheck) -> EventAction {
        match self.endpoint {
            Endpoint::ChatCompletions => self.chat_on_event(raw, check),
            Endpoint::Messages => self.messages_on_event(raw, check),
            Endpoint::Responses => self.responses_on_event(raw, check),
            Endpoint::Embeddings | Endpoint::Models => EventAction::Forward,
        }
    }

    /// A call (Anthropic block or Responses item) starts: hold it when its name is allowed; when it
    /// is not, record the refusal and return the notice that takes its place.
    pub(in crate::inspect) fn open_call(
        &mut self,
        i: u64,
        name: String,
        raw: &[u8],
        check: &dyn CallCheck,
    ) -> Option<String> {
        match check.check_name(&name) {
            None => {
                self.held_bytes += raw.len();
                self.held
                    .insert(i, HeldCall { name, events: vec![Bytes::copy_from_slice(raw)], ..HeldCall::default() });
                None
            }
            Some(why) => {
                let text = notice(&name, &why);
                self.refused.push(RefusedCall { tool: name.clone(), why });
                self.held.insert(i, HeldCall { name, refused: true, ..HeldCall::default() });
                Some(text)
            }
        }
    }

    /// A held call is complete: its events (with the closing `raw` one) when its arguments pass,
    /// otherwise the refusal is recorded and the notice returned.
    pub(in crate::inspect) fn close_call(
        &mut self,
        h: HeldCall,
        args: &str,
        raw: &[u8],
        check: &dyn CallCheck,
    ) -> Result<Vec<Bytes>, String> {
        let over = self.held_bytes > self.max_held;
        self.held_bytes = self.held_bytes.saturating_sub(h.events.iter().map(Bytes::len).sum());
        match if over { Some(too_large()) } else { check.check_args(&h.name, args) } {
            None => {
                self.allowed_calls += 1;
                if check.is_data_tool(&h.name) {
                    self.data_calls.push(h.name);
                }
                let mut events = h.events;
                events.push(Bytes::copy_from_slice(raw));
                Ok(events)
            }
            Some(why) => {
                let text = notice(&h.name, &why);
                self.refused.push(RefusedCall { tool: h.name, why });
                Err(text)
            }
        }
    }
}
