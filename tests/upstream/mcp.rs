//! A scriptable MCP server for integration tests, speaking the Streamable HTTP transport (protocol
//! revision 2025-06-18, and 2025-03-26 for batches): a small hyper 1 server on `127.0.0.1:0`, spawned
//! on the test's tokio runtime, like [`FakeUpstream`](super::FakeUpstream).
//!
//! - `POST` of JSON-RPC (request, notification, response, or a batch of them). Requests are answered
//!   with `application/json` or with `text/event-stream` ([`Answer`]), the SSE body cut by a
//!   [`Chunking`]; a POST carrying only notifications and responses gets `202 Accepted`.
//!   `initialize` opens a session (`Mcp-Session-Id`); a request naming an unknown or deleted session
//!   gets `404`. Messages queued with [`McpServer::before_next_response`] (server requests such as
//!   `sampling/createMessage`, notifications) go on the POST's SSE stream before the response.
//! - `GET` opens the server-to-client SSE stream of the session. Every event has an `id:`; a
//!   `Last-Event-ID` replays the session's later events. Tests push messages with
//!   [`McpServer::push`]; the stream stays open until the client goes away or the session is deleted.
//! - `DELETE` ends the session (its GET streams end cleanly).
//! - Scriptable: the tool list ([`McpServer::set_tools`], so a description can change between two
//!   `tools/list` — the rug pull), `tools/list` pagination ([`McpServer::set_page_size`]), tool results,
//!   `resources/read` results, and faults for the next request ([`Fault`]: hang, garbage, a status).
//! - Records every request (method, headers, body, parsed JSON-RPC messages) so tests assert on what
//!   reached the server, and every SSE event it wrote on a POST (so tests compare event ids).
//!
//! The client side ([`McpClient`], [`EventReader`], [`parse_events`], [`rpc_messages`]) works against
//! this server directly or through the gateway.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::{split, Chunking};

/// The protocol revision the server prefers.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// The revisions it accepts (the one the client asks for is echoed when it is one of these).
pub const SUPPORTED_VERSIONS: [&str; 2] = ["2025-03-26", "2025-06-18"];
/// `serverInfo.name` in the InitializeResult.
pub const SERVER_NAME: &str = "firebreak-test-mcp";

// ---------------------------------------------------------------------------------------------
// Scripting
// ---------------------------------------------------------------------------------------------

/// How a POST carrying requests is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// One `application/json` body (an array for a batch).
    Json,
    /// A `text/event-stream` body, one event per message, cut into chunks by the chunking.
    Sse(Chunking),
}

/// A fault for the next POST that carries at least one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never answer: the response head does not come (until the client goes away).
    Hang,
    /// `200 application/json` with a body that is not JSON.
    Garbage,
    /// This status, with a short text body.
    Status(u16),
}

/// The body [`Fault::Garbage`] sends.
pub const GARBAGE: &str = "<html><body>502 Bad Gateway (not JSON at all) {\"jsonrpc\": </body></html>";

/// A tool definition as `tools/list` returns it.
pub fn tool(name: &str, description: &str, props: &[&str], read_only: Option<bool>) -> Value {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|p| ((*p).to_owned(), json!({"type": "string", "description": format!("The {p}.")})))
        .collect();
    let mut t = json!({
        "name": name,
        "title": name.replace('_', " "),
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": props},
    });
    if let Some(ro) = read_only {
        t["annotations"] = json!({"readOnlyHint": ro, "destructiveHint": !ro});
    }
    t
}

/// The tools the server offers until a test sets others: `echo` (read-only), `read_file`
/// (read-only), `read_url` (no annotations), `write_file` (destructive) and `delete_repo`
/// (destructive).
pub fn default_tools() -> Vec<Value> {
    vec![
        tool("echo", "Echoes the message back.", &["message"], Some(true)),
        tool("read_file", "Reads a file from the project workspace.", &["path"], Some(true)),
        tool("read_url", "Fetches a web page and returns its text.", &["url"], None),
        tool("write_file", "Writes a file in the project workspace.", &["path", "content"], Some(false)),
        tool("delete_repo", "Deletes the repository.", &["name"], Some(false)),
    ]
}

/// A `tools/call` result with one text block.
pub fn text_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": false})
}

/// A JSON-RPC request.
pub fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params})
}

/// A JSON-RPC notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// A `tools/call` request.
pub fn call_tool(id: impl Into<Value>, name: &str, arguments: Value) -> Value {
    request(id, "tools/call", json!({"name": name, "arguments": arguments}))
}

/// The `initialize` request a client sends first.
pub fn initialize_request(id: impl Into<Value>, version: &str) -> Value {
    request(
        id,
        "initialize",
        json!({
            "protocolVersion": version,
            "capabilities": {"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}},
            "clientInfo": {"name": "firebreak-tests", "version": "0.1.0"}
        }),
    )
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct McpRecorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header as received.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Bytes,
    /// The JSON-RPC messages of the body (the elements of a batch; empty when not JSON).
    pub messages: Vec<Value>,
    /// The body was a JSON array.
    pub batch: bool,
}

impl McpRecorded {
    /// One header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Every header as `name: value` text, for "never appears anywhere" assertions.
    pub fn all_headers_text(&self) -> String {
        self.headers.iter().map(|(k, v)| format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes()))).collect()
    }

    /// The JSON-RPC methods of the body's messages (requests and notifications).
    pub fn rpc_methods(&self) -> Vec<String> {
        self.messages.iter().filter_map(|m| m.get("method").and_then(Value::as_str).map(str::to_owned)).collect()
    }

    /// The tool names of the body's `tools/call` requests.
    pub fn called_tools(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m["method"] == "tools/call")
            .filter_map(|m| m.pointer("/params/name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

/// An SSE event the server wrote on a POST's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// Its `id:`.
    pub id: String,
    /// The JSON-RPC message it carried.
    pub message: Value,
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

#[derive(Default)]
struct Session {
    deleted: bool,
    /// Events pushed on the GET stream: sequence number and the event text.
    log: Vec<(u64, String)>,
    /// Open GET streams.
    streams: Vec<Tx>,
}

struct State {
    answer: Answer,
    tools: Vec<Value>,
    page_size: Option<usize>,
    tool_results: BTreeMap<String, Value>,
    resources: BTreeMap<String, Value>,
    before: VecDeque<Vec<Value>>,
    faults: VecDeque<Fault>,
    /// Keyed by session id; `""` holds the GET streams opened without a session.
    sessions: HashMap<String, Session>,
    requests: Vec<McpRecorded>,
    answers: Vec<Vec<Sent>>,
    next_event: u64,
    next_session: u64,
    /// The line ending of the SSE events it writes (`"\n"` unless a test plays a hostile server).
    eol: &'static str,
    /// Raw SSE text written first on the next SSE answer to a POST (events a hostile server sends).
    raw_before: Option<String>,
    /// The next SSE answer is `raw_before` alone (the responses are not sent).
    raw_only: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Pinged on every request received and every GET stream opened.
    changed: Notify,
}

/// The running test MCP server. It lives as long as the test's runtime.
pub struct McpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl McpServer {
    /// Starts the server with [`default_tools`], answering in JSON.
    pub async fn start() -> McpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind test MCP server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                answer: Answer::Json,
                tools: default_tools(),
                page_size: None,
                tool_results: BTreeMap::new(),
                resources: BTreeMap::new(),
                before: VecDeque::new(),
                faults: VecDeque::new(),
                sessions: HashMap::new(),
                requests: Vec::new(),
                answers: Vec::new(),
                next_event: 1,
                next_session: 1,
                eol: "\n",
                raw_before: None,
                raw_only: false,
            }),
            changed: Notify::new(),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        McpServer { addr, shared }
    }

    /// The Streamable HTTP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// How POSTs carrying requests are answered from now on.
    pub fn set_answer(&self, a: Answer) {
        self.state().answer = a;
    }

    /// Replaces the tool list.
    pub fn set_tools(&self, tools: Vec<Value>) {
        self.state().tools = tools;
    }

    /// Edits the tool list in place.
    pub fn edit_tools(&self, f: impl FnOnce(&mut Vec<Value>)) {
        f(&mut self.state().tools);
    }

    /// Sets the description of the tool `name` (panics when there is no such tool).
    pub fn set_description(&self, name: &str, description: &str) {
        self.edit_tools(|tools| {
            let t = tools.iter_mut().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no tool {name}"));
            t["description"] = json!(description);
        });
    }

    /// `tools/list` pages of at most `n` tools (`None`: one page).
    pub fn set_page_size(&self, n: Option<usize>) {
        self.state().page_size = n;
    }

    /// What `tools/call` of `tool` returns (a CallToolResult).
    pub fn set_tool_result(&self, tool: &str, result: Value) {
        self.state().tool_results.insert(tool.to_owned(), result);
    }

    /// What `resources/read` of `uri` returns (a ReadResourceResult).
    pub fn set_resource(&self, uri: &str, result: Value) {
        self.state().resources.insert(uri.to_owned(), result);
    }

    /// Messages written on the SSE stream of the next POST carrying a request, before its responses
    /// (that answer is SSE even in [`Answer::Json`] mode).
    pub fn before_next_response(&self, messages: Vec<Value>) {
        self.state().before.push_back(messages);
    }

    /// The line ending of every SSE event written from now on: `"\n"`, `"\r\n"`, `"\r"` (all
    /// valid SSE; clients accept each) or `"mix"` (all three in one event).
    pub fn set_line_ending(&self, eol: &'static str) {
        self.state().eol = eol;
    }

    /// Raw SSE text written first on the next SSE answer to a POST carrying a request (that answer
    /// is SSE even in [`Answer::Json`] mode).
    pub fn raw_before_next_response(&self, text: &str) {
        let mut st = self.state();
        st.raw_before = Some(text.to_owned());
        st.before.push_back(Vec::new());
    }

    /// Like [`raw_before_next_response`](Self::raw_before_next_response), but the responses
    /// themselves are not sent: the raw text is the whole answer.
    pub fn raw_instead_of_next_response(&self, text: &str) {
        self.raw_before_next_response(text);
        self.state().raw_only = true;
    }

    /// A fault for the next POST carrying a request.
    pub fn fail_next(&self, f: Fault) {
        self.state().faults.push_back(f);
    }

    /// Pushes `message` on the GET streams of `session` (`None`: the streams opened without a
    /// session); it is logged for `Last-Event-ID` replay. Returns the event id and how many open
    /// streams it was written to.
    pub fn push(&self, session: Option<&str>, message: &Value) -> (String, usize) {
        let mut st = self.state();
        let n = st.next_event;
        st.next_event += 1;
        let id = format!("g{n}");
        let text = event_text(&id, message, st.eol);
        let chunking = match st.answer {
            Answer::Sse(c) => c,
            Answer::Json => Chunking::Whole,
        };
        let s = st.sessions.entry(session.unwrap_or("").to_owned()).or_default();
        s.log.push((n, text.clone()));
        s.streams.retain(|tx| !tx.is_closed());
        let mut written = 0;
        for tx in &s.streams {
            if split(text.as_bytes(), chunking).into_iter().all(|c| tx.try_send(Ok(c)).is_ok()) {
                written += 1;
            }
        }
        (id, written)
    }

    /// Open GET streams of `session` (`None`: without a session) that the client has not left.
    pub fn open_streams(&self, session: Option<&str>) -> usize {
        let st = self.state();
        st.sessions.get(session.unwrap_or("")).map_or(0, |s| s.streams.iter().filter(|t| !t.is_closed()).count())
    }

    /// Waits (bounded, 10 s) until `session` has `n` open GET streams.
    pub async fn wait_streams(&self, session: Option<&str>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.changed.notified();
            let open = self.open_streams(session);
            if open == n {
                return;
            }
            assert!(Instant::now() < deadline, "{open} open GET streams for {session:?}, expected {n}");
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }

    /// The session ids `initialize` handed out, oldest first.
    pub fn sessions(&self) -> Vec<String> {
        let st = self.state();
        let mut ids: Vec<String> = st.sessions.keys().filter(|k| !k.is_empty()).cloned().collect();
        ids.sort();
        ids
    }

    /// Whether `id` was deleted (DELETE).
    pub fn session_deleted(&self, id: &str) -> bool {
        self.state().sessions.get(id).is_some_and(|s| s.deleted)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<McpRecorded> {
        self.state().requests.clone()
    }

    /// The last request received (panics if none).
    pub fn last_request(&self) -> McpRecorded {
        self.requests().pop().expect("the MCP server received no request")
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        self.state().requests.len()
    }

    /// The POSTs received so far.
    pub fn posts(&self) -> Vec<McpRecorded> {
        self.requests().into_iter().filter(|r| r.method == "POST").collect()
    }

    /// Every JSON-RPC message received in POSTs, in order.
    pub fn messages(&self) -> Vec<Value> {
        self.posts().into_iter().flat_map(|r| r.messages).collect()
    }

    /// The `tools/call` names received, in order.
    pub fn called_tools(&self) -> Vec<String> {
        self.posts().iter().flat_map(McpRecorded::called_tools).collect()
    }

    /// Whether a message with this JSON-RPC `id` reached the server.
    pub fn received_id(&self, id: &Value) -> bool {
        self.messages().iter().any(|m| m.get("id") == Some(id))
    }

    /// The SSE events written on each POST answered with SSE, oldest first.
    pub fn sse_answers(&self) -> Vec<Vec<Sent>> {
        self.state().answers.clone()
    }

    /// Waits (bounded, 10 s) until `pred` holds for the requests received.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[McpRecorded]) -> bool) -> Vec<McpRecorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.changed.notified();
            let r = self.requests();
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "the MCP server never received {what}; it got:\n{r:#?}");
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

type McpBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A channel-fed response body.
struct ChanBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn full(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<McpBody> {
    let body = http_body_util::Full::new(body.into()).map_err(|never| match never {});
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (k, v) in headers {
        resp.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    resp
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// One event; `eol` `"mix"` ends its lines with CR, CRLF, LF and CR in turn.
fn event_text(id: &str, message: &Value, eol: &str) -> String {
    let e: [&str; 4] = if eol == "mix" { ["\r", "\r\n", "\n", "\r"] } else { [eol; 4] };
    format!("id: {id}{}event: message{}data: {message}{}{}", e[0], e[1], e[2], e[3])
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<McpBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (messages, batch) = match &parsed {
        Some(Value::Array(a)) => (a.clone(), true),
        Some(v @ Value::Object(_)) => (vec![v.clone()], false),
        _ => (Vec::new(), false),
    };
    let session = parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    {
        let mut st = s.state.lock().unwrap();
        st.requests.push(McpRecorded {
            method: parts.method.to_string(),
            path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
            headers: parts.headers.clone(),
            body: body.clone(),
            messages: messages.clone(),
            batch,
        });
    }
    s.changed.notify_waiters();
    if parts.uri.path() != "/mcp" {
        return Ok(full(404, &[("content-type", "text/plain")], "not an MCP endpoint"));
    }
    // A session the server does not know (or ended) gets 404, so the client starts a new one.
    if let Some(id) = &session {
        let known = s.state.lock().unwrap().sessions.get(id).is_some_and(|x| !x.deleted);
        if !known {
            return Ok(full(
                404,
                &[("content-type", "application/json")],
                rpc_error(Value::Null, -32001, "Session not found").to_string(),
            ));
        }
    }
    let resp = match parts.method {
        Method::POST => post(&s, &parts.headers, parsed, messages, batch).await,
        Method::GET => get(&s, &parts.headers, session),
        Method::DELETE => match session {
            Some(id) => {
                let mut st = s.state.lock().unwrap();
                let sess = st.sessions.entry(id).or_default();
                sess.deleted = true;
                // Dropping the senders ends the session's GET streams cleanly.
                sess.streams.clear();
                full(200, &[], "")
            }
            None => full(400, &[("content-type", "text/plain")], "DELETE needs Mcp-Session-Id"),
        },
        _ => full(405, &[("allow", "GET, POST, DELETE")], ""),
    };
    Ok(resp)
}

fn get(s: &Arc<Shared>, headers: &HeaderMap, session: Option<String>) -> Response<McpBody> {
    let accepts = headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    if !accepts {
        return full(406, &[("content-type", "text/plain")], "GET needs Accept: text/event-stream");
    }
    let last: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix('g'))
        .and_then(|n| n.parse().ok());
    let (tx, rx) = mpsc::channel(1024);
    {
        let mut st = s.state.lock().unwrap();
        let sess = st.sessions.entry(session.unwrap_or_default()).or_default();
        if let Some(last) = last {
            for (_, text) in sess.log.iter().filter(|(n, _)| *n > last) {
                let _ = tx.try_send(Ok(Bytes::from(text.clone())));
            }
        }
        sess.streams.push(tx);
    }
    s.changed.notify_waiters();
    let mut resp = Response::new(BodyExt::boxed(ChanBody(rx)));
    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
    resp.headers_mut().insert("cache-control", http::HeaderValue::from_static("no-cache"));
    resp
}

async fn post(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    parsed: Option<Value>,
    messages: Vec<Value>,
    batch: bool,
) -> Response<McpBody> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/json") {
        return full(415, &[("content-type", "text/plain")], "POST needs Content-Type: application/json");
    }
    if parsed.is_none() {
        let e = rpc_error(Value::Null, -32700, "Parse error");
        return full(400, &[("content-type", "application/json")], e.to_string());
    }
    let requests: Vec<&Value> =
        messages.iter().filter(|m| m.get("method").is_some() && m.get("id").is_some()).collect();
    if requests.is_empty() {
        return full(202, &[], "");
    }
    let (fault, before, answer) = {
        let mut st = s.state.lock().unwrap();
        (st.faults.pop_front(), st.before.pop_front(), st.answer)
    };
    match fault {
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return full(500, &[], "");
        }
        Some(Fault::Garbage) => return full(200, &[("content-type", "application/json")], GARBAGE),
        Some(Fault::Status(code)) => return full(code, &[("content-type", "text/plain")], "scripted failure"),
        None => {}
    }
    let mut new_session = None;
    let responses: Vec<Value> = requests
        .iter()
        .map(|r| {
            let (resp, sid) = respond(s, r);
            if sid.is_some() {
                new_session = sid;
            }
            resp
        })
        .collect();
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(sid) = &new_session {
        extra.push(("mcp-session-id", sid.clone()));
    }
    let chunking = match (answer, &before) {
        (Answer::Sse(c), _) => c,
        (Answer::Json, Some(_)) => Chunking::Whole,
        (Answer::Json, None) => {
            let body =
                if batch { Value::Array(responses) } else { responses.into_iter().next().unwrap_or(Value::Null) };
            let mut h = vec![("content-type", "application/json")];
            h.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            return full(200, &h, body.to_string());
        }
    };
    // SSE: the queued server messages first, then one event per response.
    let mut sent = Vec::new();
    let mut text = String::new();
    {
        let mut st = s.state.lock().unwrap();
        text += &st.raw_before.take().unwrap_or_default();
        let responses = if std::mem::take(&mut st.raw_only) { Vec::new() } else { responses };
        for m in before.into_iter().flatten().chain(responses) {
            let id = format!("p{}", st.next_event);
            st.next_event += 1;
            text += &event_text(&id, &m, st.eol);
            sent.push(Sent { id, message: m });
        }
        st.answers.push(sent);
    }
    let chunks = split(text.as_bytes(), chunking);
    let delay = if chunking == Chunking::Whole { Duration::ZERO } else { Duration::from_millis(1) };
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        for (i, c) in chunks.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(c)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(BodyExt::boxed(ChanBody(rx)));
    resp.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
    resp.headers_mut().insert("cache-control", http::HeaderValue::from_static("no-cache"));
    for (k, v) in extra {
        resp.headers_mut().insert(k, http::HeaderValue::from_str(&v).expect("session id"));
    }
    resp
}

/// The response to one request, and the session it opened (for `initialize`).
fn respond(s: &Arc<Shared>, r: &Value) -> (Value, Option<String>) {
    let id = r["id"].clone();
    let method = r["method"].as_str().unwrap_or("");
    let params = &r["params"];
    let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id.clone(), "result": result});
    let mut st = s.state.lock().unwrap();
    let result = match method {
        "initialize" => {
            let n = st.next_session;
            st.next_session += 1;
            let sid = format!("mcp-sess-{n:04}-{:016x}", rand_u64());
            st.sessions.insert(sid.clone(), Session::default());
            let asked = params["protocolVersion"].as_str().unwrap_or("");
            let version = if SUPPORTED_VERSIONS.contains(&asked) { asked } else { PROTOCOL_VERSION };
            let result = json!({
                "protocolVersion": version,
                "capabilities": {
                    "tools": {"listChanged": true},
                    "resources": {"subscribe": true, "listChanged": true},
                    "prompts": {"listChanged": true},
                    "logging": {}
                },
                "serverInfo": {"name": SERVER_NAME, "title": "firebreak test MCP server", "version": "0.1.0"},
                "instructions": "A scriptable server for firebreak's integration tests."
            });
            return (ok(result), Some(sid));
        }
        "ping" | "logging/setLevel" | "resources/subscribe" => json!({}),
        "tools/list" => {
            let start: usize = params["cursor"]
                .as_str()
                .map(|c| c.strip_prefix("cursor-").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX))
                .unwrap_or(0);
            if start == usize::MAX {
                return (rpc_error(id, -32602, "Invalid cursor"), None);
            }
            let size = st.page_size.unwrap_or(usize::MAX);
            let page: Vec<Value> = st.tools.iter().skip(start).take(size).cloned().collect();
            let mut result = json!({"tools": page});
            if start.saturating_add(size) < st.tools.len() {
                result["nextCursor"] = json!(format!("cursor-{}", start + size));
            }
            result
        }
        "tools/call" => {
            let name = params["name"].as_str().unwrap_or("");
            if !st.tools.iter().any(|t| t["name"] == name) {
                return (rpc_error(id, -32602, &format!("Unknown tool: {name}")), None);
            }
            match st.tool_results.get(name) {
                Some(r) => r.clone(),
                None if name == "echo" => {
                    text_result(params.pointer("/arguments/message").and_then(Value::as_str).unwrap_or(""))
                }
                None => text_result(&format!("{name} done with {}", params["arguments"])),
            }
        }
        "resources/list" => {
            let list: Vec<Value> =
                st.resources.keys().map(|u| json!({"uri": u, "name": u, "mimeType": "text/plain"})).collect();
            json!({"resources": list})
        }
        "resources/read" => {
            let uri = params["uri"].as_str().unwrap_or("");
            st.resources.get(uri).cloned().unwrap_or_else(
                || json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("contents of {uri}")}]}),
            )
        }
        "prompts/list" => {
            json!({"prompts": [{"name": "greet", "description": "Greets someone.", "arguments": [{"name": "who", "required": true}]}]})
        }
        "prompts/get" => json!({
            "description": "Greets someone.",
            "messages": [{"role": "user", "content": {"type": "text", "text": format!("Say hello to {}.", params.pointer("/arguments/who").and_then(Value::as_str).unwrap_or("you"))}}]
        }),
        _ => return (rpc_error(id, -32601, &format!("Method not found: {method}")), None),
    };
    (ok(result), None)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// One SSE event as a client sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// `id:`
    pub id: Option<String>,
    /// `event:`
    pub name: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: Option<String>,
    /// Comment lines (without the leading `:`).
    pub comments: Vec<String>,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> Option<Value> {
        self.data.as_deref().and_then(|d| serde_json::from_str(d).ok())
    }

    fn parse(raw: &str) -> Event {
        let mut ev = Event::default();
        for line in raw.split('\n').filter(|l| !l.is_empty()) {
            if let Some(c) = line.strip_prefix(':') {
                ev.comments.push(c.to_owned());
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => ev.id = Some(value.to_owned()),
                "event" => ev.name = Some(value.to_owned()),
                "data" => {
                    ev.data = Some(match ev.data.take() {
                        None => value.to_owned(),
                        Some(p) => format!("{p}\n{value}"),
                    })
                }
                _ => {}
            }
        }
        ev
    }
}

/// Parses a whole SSE body (LF, CRLF or CR line endings) into its events; comment-only events are
/// kept (with no data). Panics on a trailing unterminated event.
pub fn parse_events(body: &str) -> Vec<Event> {
    let body = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let Some(end) = rest.find("\n\n") else {
            panic!("SSE body ends in the middle of an event: {rest:?}");
        };
        out.push(Event::parse(&rest[..end]));
        rest = &rest[end + 2..];
    }
    out
}

/// The JSON-RPC messages of an answer: the body (an array is flattened) for JSON, the events' data for
/// SSE. Panics on anything else.
pub fn rpc_messages(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        return parse_events(body).iter().filter_map(Event::json).collect();
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(e) => panic!("answer is not JSON ({e}), content-type {content_type:?}: {body}"),
    }
}

/// Reads an SSE response event by event, each read bounded by a deadline. Bytes are buffered, so
/// chunks cut anywhere (inside a UTF-8 character, between the two newlines) are fine.
pub struct EventReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buf: Vec<u8>,
    done: bool,
}

/// Why [`EventReader::next`] returned no event.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The stream ended cleanly.
    Closed,
    /// The deadline passed first.
    Timeout,
    /// The connection broke (a torn stream).
    Broken(String),
}

impl EventReader {
    /// Wraps a response.
    pub fn new(resp: reqwest::Response) -> EventReader {
        EventReader { body: resp.bytes_stream().boxed(), buf: Vec::new(), done: false }
    }

    fn take_event(&mut self) -> Option<Event> {
        // Normalise CRLF / CR endings in what is buffered (a lone trailing CR may still become CRLF).
        let keep_cr = self.buf.last() == Some(&b'\r');
        let mut norm = Vec::with_capacity(self.buf.len());
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\r' {
                if i + 1 == self.buf.len() && keep_cr {
                    norm.push(b'\r');
                } else {
                    norm.push(b'\n');
                    if self.buf.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
            } else {
                norm.push(b);
            }
            i += 1;
        }
        self.buf = norm;
        let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
        let text = String::from_utf8(raw[..end].to_vec()).unwrap_or_else(|e| panic!("SSE event is not UTF-8: {e}"));
        Some(Event::parse(&text))
    }

    /// The next event with data (comment-only events are skipped), before `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<Event, ReadEnd> {
        loop {
            while let Some(ev) = self.take_event() {
                if ev.data.is_some() {
                    return Ok(ev);
                }
            }
            if self.done {
                return Err(ReadEnd::Closed);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(ReadEnd::Timeout),
                Ok(None) => {
                    self.done = true;
                    if !self.buf.iter().all(u8::is_ascii_whitespace) {
                        let rest = String::from_utf8_lossy(&self.buf).into_owned();
                        return Err(ReadEnd::Broken(format!("stream ended inside an event: {rest:?}")));
                    }
                }
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Err(ReadEnd::Broken(e.to_string()));
                }
                Ok(Some(Ok(b))) => self.buf.extend_from_slice(&b),
            }
        }
    }

    /// The next event, or a panic naming `what` when there is none before `deadline`.
    pub async fn expect(&mut self, deadline: Instant, what: &str) -> Event {
        match self.next(deadline).await {
            Ok(ev) => ev,
            Err(e) => panic!("expected {what} on the SSE stream, got {e:?}"),
        }
    }
}

/// A finished answer to an MCP request.
#[derive(Debug)]
pub struct McpGot {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub text: String,
}

impl McpGot {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The content type (empty when absent).
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// The JSON-RPC messages of the body (see [`rpc_messages`]).
    pub fn messages(&self) -> Vec<Value> {
        rpc_messages(self.content_type(), &self.text)
    }

    /// The SSE events of the body (panics when it is not SSE).
    pub fn events(&self) -> Vec<Event> {
        assert!(
            self.content_type().starts_with("text/event-stream"),
            "not SSE: {:?} {}",
            self.content_type(),
            self.text
        );
        parse_events(&self.text)
    }

    /// The message answering `id` (panics when there is none).
    pub fn answer(&self, id: &Value) -> Value {
        let msgs = self.messages();
        msgs.iter()
            .find(|m| m.get("id") == Some(id) && m.get("method").is_none())
            .cloned()
            .unwrap_or_else(|| panic!("no answer to id {id} in: {msgs:#?}"))
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }
}

/// An MCP client over Streamable HTTP: a key, the session it got from `initialize`, and the protocol
/// version it negotiated (sent as `MCP-Protocol-Version` after `initialize`).
#[derive(Clone)]
pub struct McpClient {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// The endpoint (`…/mcp/<server>` on the gateway, or the server's own).
    pub url: String,
    /// Sent as `Authorization: Bearer`.
    pub key: Option<String>,
    /// `Mcp-Session-Id` to send.
    pub session: Option<String>,
    /// `MCP-Protocol-Version` to send.
    pub version: Option<String>,
}

impl McpClient {
    /// A client of `url` with `key`.
    pub fn new(url: &str, key: Option<&str>) -> McpClient {
        McpClient {
            http: reqwest::Client::builder().build().expect("client"),
            url: url.to_owned(),
            key: key.map(str::to_owned),
            session: None,
            version: None,
        }
    }

    /// A request builder with the client's headers.
    pub fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, &self.url);
        if let Some(k) = &self.key {
            rb = rb.bearer_auth(k);
        }
        if let Some(s) = &self.session {
            rb = rb.header("mcp-session-id", s);
        }
        if let Some(v) = &self.version {
            rb = rb.header("mcp-protocol-version", v);
        }
        rb
    }

    /// A POST of `body` (JSON) with both `Accept` types.
    pub fn post_builder(&self, body: &Value) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// POSTs `body` and reads the whole answer (bounded by 30 s).
    pub async fn post(&self, body: &Value) -> McpGot {
        read(self.post_builder(body)).await
    }

    /// `initialize` then `notifications/initialized`; keeps the session id and the version. Panics
    /// unless both succeed. Returns the InitializeResult.
    pub async fn initialize(&mut self, version: &str) -> Value {
        let g = self.post(&initialize_request(0, version)).await;
        assert_eq!(g.status, 200, "initialize: {}", g.text);
        let result = g.answer(&json!(0))["result"].clone();
        assert!(result.is_object(), "initialize result: {}", g.text);
        self.session = g.header("mcp-session-id").map(str::to_owned);
        assert!(self.session.is_some(), "initialize returns Mcp-Session-Id: {:?}", g.headers);
        self.version = result["protocolVersion"].as_str().map(str::to_owned);
        let g = self.post(&notification("notifications/initialized", json!({}))).await;
        assert_eq!(g.status, 202, "notifications/initialized is accepted with 202: {}", g.text);
        result
    }

    /// Sends one request and returns the message answering it.
    pub async fn rpc(&self, id: impl Into<Value>, method: &str, params: Value) -> Value {
        let id = id.into();
        let g = self.post(&request(id.clone(), method, params)).await;
        assert_eq!(g.status, 200, "{method}: {}", g.text);
        g.answer(&id)
    }

    /// Every tool name, following `nextCursor` to the end (at most 50 pages).
    pub async fn list_tool_names(&self) -> Vec<String> {
        self.list_tools().await.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect()
    }

    /// Every tool definition, following `nextCursor` to the end (at most 50 pages).
    pub async fn list_tools(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..50 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let a = self.rpc(format!("list-{page}"), "tools/list", params).await;
            let result = &a["result"];
            assert!(result["tools"].is_array(), "tools/list result: {a}");
            out.extend(result["tools"].as_array().into_iter().flatten().cloned());
            match result["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("tools/list never ended");
    }

    /// Opens the GET stream (with `Last-Event-ID` when given); returns the response as received.
    pub async fn open_stream(&self, last_event_id: Option<&str>) -> reqwest::Response {
        let mut rb = self.request(reqwest::Method::GET).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            rb = rb.header("last-event-id", id);
        }
        tokio::time::timeout(Duration::from_secs(30), rb.send())
            .await
            .expect("GET stream head within 30 s")
            .expect("GET stream request")
    }

    /// DELETE of the session.
    pub async fn delete(&self) -> McpGot {
        read(self.request(reqwest::Method::DELETE)).await
    }
}

/// Sends and reads the whole answer (bounded by 30 s).
pub async fn read(rb: reqwest::RequestBuilder) -> McpGot {
    let fut = async {
        let resp = rb.send().await.expect("MCP request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("reading the MCP answer failed");
        McpGot { status, headers, text }
    };
    tokio::time::timeout(Duration::from_secs(30), fut).await.expect("MCP answer within 30 s")
}
