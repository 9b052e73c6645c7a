"""Fixtures for the MCP end-to-end tests: a REAL MCP server behind the gateway, driven by the REAL
MCP client.

- Server: `@modelcontextprotocol/server-everything` (the MCP project's reference server), the exact
  version pinned in tests/e2e/mcp/package-lock.json, installed by `bash tests/run.sh` into
  tests/e2e/mcp/node_modules. Its entry point comes from $MCP_EVERYTHING_BIN (default: the installed
  package's dist/index.js), started as `node --require tests/e2e/mcp/loopback.cjs <bin>
  streamableHttp` with PORT=0. The preload only makes it bind 127.0.0.1 and report the ephemeral port
  it got (the server itself binds every interface and logs the port it was asked for). A server that
  cannot start is a failure with its output, never a skip.
- Client: the official `mcp` Python SDK (`streamable_http_client` + `ClientSession`), with the
  virtual key in an httpx2 client's default headers, and a recorder of every HTTP exchange so tests
  can check the `Mcp-Session-Id` the SDK sends.
- Raw SSE: a small synchronous httpx2 reader for the timing of stream cuts, which the SDK hides
  behind its reconnect logic.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import KEY_ALICE, KEY_CAROL, REPO_ROOT, Gateway, sha256_hex, toml_str

MCP_DIR = REPO_ROOT / "tests" / "e2e" / "mcp"
LOOPBACK_PRELOAD = MCP_DIR / "loopback.cjs"
DEFAULT_EVERYTHING_BIN = MCP_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
SERVER_START_DEADLINE_S = 30.0
SERVER_STOP_DEADLINE_S = 10.0

SERVER_NAME = "everything"
# What the role `mcp_user` may use on it (tool names of server-everything 2026.8.31).
ALLOWED_TOOLS = ("echo", "get-sum", "trigger-long-running-operation")
# A tool server-everything has that the role may not use (it would hand out the server's
# environment: the very kind of tool a gateway exists to keep from an agent).
UNLISTED_TOOL = "get-env"

# The fields of a tool definition that its pinned hash covers (docs/MCP.md, "Pinning").
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

# The raw client's protocol revision (the newest one reached with the initialize handshake).
RAW_PROTOCOL_VERSION = "2025-11-25"


# -- the server -------------------------------------------------------------------------------------

def everything_bin() -> Path:
    raw = os.environ.get("MCP_EVERYTHING_BIN")
    p = Path(raw) if raw else DEFAULT_EVERYTHING_BIN
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


@dataclass
class EverythingServer:
    """A running `server-everything streamableHttp` on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    dir: Path
    stdout_path: Path
    stderr_path: Path
    _files: list[Any] = field(repr=False, default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except OSError:
            return ""

    def stdout_lines(self) -> list[str]:
        return self.stdout().splitlines()

    def count(self, line: str) -> int:
        """How many lines of its stdout are exactly `line` (it logs one per HTTP request)."""
        return sum(1 for l in self.stdout_lines() if l == line)

    def sessions(self) -> list[str]:
        """Session ids it created, in order (it logs `Session initialized with ID: <id>`)."""
        prefix = "Session initialized with ID: "
        return [l[len(prefix):] for l in self.stdout_lines() if l.startswith(prefix)]

    def log(self) -> str:
        try:
            err = self.stderr_path.read_text(errors="replace")
        except OSError:
            err = ""
        return f"[stdout]\n{self.stdout()[-3000:]}\n[stderr]\n{err[-3000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SERVER_STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=SERVER_STOP_DEADLINE_S)
        for f in self._files:
            f.close()
        self._files.clear()


def start_everything(workdir: Path) -> EverythingServer:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the MCP e2e tests need Node.js (bash .ci/run installs it)", pytrace=False)
    bin_path = everything_bin()
    if not bin_path.is_file():
        pytest.fail(
            f"@modelcontextprotocol/server-everything not found at {bin_path}. Install it with "
            "`npm ci --prefix tests/e2e/mcp` (bash tests/run.sh does), or set MCP_EVERYTHING_BIN.",
            pytrace=False,
        )
    workdir.mkdir(parents=True, exist_ok=True)
    listen_file = workdir / "listen.json"
    out_path, err_path = workdir / "server.stdout", workdir / "server.stderr"
    out, err = open(out_path, "wb"), open(err_path, "wb")
    env = dict(os.environ, PORT="0", FIREBREAK_E2E_LISTEN_FILE=str(listen_file), NO_COLOR="1")
    proc = subprocess.Popen(
        [node, "--require", str(LOOPBACK_PRELOAD), str(bin_path), "streamableHttp"],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
    )

    def output() -> str:
        return f"[stdout]\n{out_path.read_text(errors='replace')}\n[stderr]\n{err_path.read_text(errors='replace')}"

    deadline = time.monotonic() + SERVER_START_DEADLINE_S
    doc = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out.close()
            err.close()
            pytest.fail(f"server-everything exited with status {proc.returncode} before listening:\n{output()}", pytrace=False)
        if listen_file.exists():
            try:
                doc = json.loads(listen_file.read_text())
                break
            except ValueError:
                pass  # renamed into place, so complete; be tolerant anyway
        time.sleep(0.02)  # polling interval, not synchronisation: the deadline bounds the wait
    else:
        proc.kill()
        proc.wait()
        out.close()
        err.close()
        pytest.fail(f"server-everything did not listen within {SERVER_START_DEADLINE_S} s:\n{output()}", pytrace=False)
    assert doc["pid"] == proc.pid, f"listen file names pid {doc['pid']}, expected {proc.pid}"
    assert doc["host"] == "127.0.0.1", f"server-everything bound {doc['host']}, expected loopback only"
    return EverythingServer(proc=proc, host=doc["host"], port=int(doc["port"]), dir=workdir,
                            stdout_path=out_path, stderr_path=err_path, _files=[out, err])


@pytest.fixture
def everything(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EverythingServer]:
    """A fresh server-everything for one test (its output printed when the test failed)."""
    srv = start_everything(tmp_path / "everything")
    yield srv
    srv.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- server-everything output ({srv.dir}) ---\n{srv.log()}")


# -- the gateway in front of it ---------------------------------------------------------------------

def mcp_policy(servers: dict[str, str], mcp_globs: list[str], extra: str = "") -> str:
    """MCP servers by name -> URL; alice (role mcp_user) may use `mcp_globs`; carol (role analyst)
    no MCP at all. `extra` is appended (e.g. `[mcp_servers.everything.pins]`)."""
    server_tables = "".join(f"\n[mcp_servers.{name}]\nurl = {toml_str(url)}\n" for name, url in servers.items())
    globs = ", ".join(toml_str(g) for g in mcp_globs)
    return f"""
[admin]
token_env = "FIREBREAK_ADMIN_TOKEN"

[upstreams.fast]
kind = "scripted"

[[upstreams.fast.replies]]
text = "unused by the MCP tests"

[[routes]]
api = "openai"
upstream = "fast"
{server_tables}
[[keys]]
id = "alice-e2e"
sha256 = "{sha256_hex(KEY_ALICE)}"
tenant = "acme"
user = "alice"
role = "mcp_user"

[[keys]]
id = "carol-e2e"
sha256 = "{sha256_hex(KEY_CAROL)}"
tenant = "globex"
user = "carol"
role = "analyst"

[incidents]
auto_contain = false

[roles.mcp_user]
mcp = [{globs}]

[roles.analyst]
tools = ["search_*"]
{extra}"""


def default_globs() -> list[str]:
    return [f"{SERVER_NAME}/{t}" for t in ALLOWED_TOOLS]


@pytest.fixture
def mcp_gateway(start: Callable[..., Gateway], everything: EverythingServer) -> Gateway:
    """A gateway whose policy fronts `everything` as MCP server `everything`."""
    return start(policy=mcp_policy({SERVER_NAME: everything.url}, default_globs()), name="gw-mcp")


def mcp_url(g: Gateway, server: str = SERVER_NAME) -> str:
    return f"http://{g.proxy}/mcp/{server}"


# -- the official SDK -------------------------------------------------------------------------------

@dataclass
class Exchange:
    method: str
    status: int
    request_session: str | None
    response_session: str | None
    content_type: str


@dataclass
class McpConn:
    session: ClientSession
    exchanges: list[Exchange]

    def last_post(self) -> Exchange:
        """The last POST answered (the SDK's GET stream is recorded in the same list, concurrently)."""
        return [e for e in self.exchanges if e.method == "POST"][-1]


@contextlib.asynccontextmanager
async def sdk_session(url: str, key: str | None = KEY_ALICE, *, read_timeout_s: float = 30.0) -> AsyncIterator[McpConn]:
    """`streamable_http_client` + `ClientSession` (not yet initialized) with `key` as the bearer
    token; every HTTP response is recorded (method, status, Mcp-Session-Id both ways)."""
    exchanges: list[Exchange] = []

    async def on_response(resp: httpx2.Response) -> None:
        exchanges.append(Exchange(
            method=resp.request.method,
            status=resp.status_code,
            request_session=resp.request.headers.get("mcp-session-id"),
            response_session=resp.headers.get("mcp-session-id"),
            content_type=resp.headers.get("content-type", ""),
        ))

    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [on_response]},
    ) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=read_timeout_s) as session:
                yield McpConn(session=session, exchanges=exchanges)


# -- raw Streamable HTTP, for timing ------------------------------------------------------------------

@dataclass
class SseEvent:
    id: str | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def iter_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """A minimal SSE parser (enough for JSON-RPC messages: data lines joined by newlines)."""
    ev_id: str | None = None
    ev_type = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield SseEvent(ev_id, ev_type, "\n".join(data))
            ev_type, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            ev_type = value
        elif name == "id":
            ev_id = value
    if data:
        yield SseEvent(ev_id, ev_type, "\n".join(data))


def messages_of(resp: httpx2.Response) -> list[Any]:
    """The JSON-RPC messages of a complete (non-streamed) answer, JSON or SSE."""
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        return [e.json() for e in iter_sse(iter(resp.text.splitlines())) if e.data]
    if not resp.content:
        return []
    body = resp.json()
    return body if isinstance(body, list) else [body]


class RawMcp:
    """A bare Streamable HTTP client (httpx2, synchronous) for one session."""

    def __init__(self, url: str, key: str = KEY_ALICE) -> None:
        self.url = url
        self.http = httpx2.Client(timeout=httpx2.Timeout(30.0, read=60.0), headers={"Authorization": f"Bearer {key}"})
        self.session_id: str | None = None
        self._next_id = 100

    def close(self) -> None:
        self.http.close()

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def headers(self, accept: str = "application/json, text/event-stream") -> dict[str, str]:
        h = {"Accept": accept, "MCP-Protocol-Version": RAW_PROTOCOL_VERSION}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
        return h

    def post(self, msg: dict[str, Any]) -> httpx2.Response:
        return self.http.post(self.url, json=msg, headers=self.headers())

    def initialize(self) -> dict[str, Any]:
        r = self.http.post(self.url, headers={"Accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": RAW_PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": {"name": "firebreak-e2e-raw", "version": "0"}},
        })
        assert r.status_code == 200, f"initialize: HTTP {r.status_code}: {r.text}"
        self.session_id = r.headers.get("mcp-session-id")
        assert self.session_id, f"initialize answered without Mcp-Session-Id: {dict(r.headers)}"
        msgs = messages_of(r)
        assert msgs and "result" in msgs[-1], msgs
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202, f"notifications/initialized: HTTP {n.status_code}: {n.text}"
        return msgs[-1]["result"]

    def call(self, method: str, params: dict[str, Any]) -> tuple[httpx2.Response, list[Any]]:
        r = self.post({"jsonrpc": "2.0", "id": self.next_id(), "method": method, "params": params})
        return r, messages_of(r)


def definition_hash(tool: dict[str, Any]) -> str:
    """docs/MCP.md: SHA-256 of the definition's hashed fields as canonical JSON (keys sorted, no
    whitespace)."""
    import hashlib

    fields = {k: tool[k] for k in PINNED_FIELDS if k in tool}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class SseReader:
    """Reads one streamed answer (a GET stream, or a POST answered with SSE) in a thread, stamping
    when it opened, every event, and the end of the stream (EOF or a transport error)."""

    def __init__(self, raw: RawMcp, method: str, body: dict[str, Any] | None = None) -> None:
        self.raw, self.method, self.body = raw, method, body
        self.status: int | None = None
        self.content_type = ""
        self.events: list[tuple[float, SseEvent]] = []
        self.ended_at: float | None = None
        self.error: BaseException | None = None
        self.opened = threading.Event()
        self.got_event = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"sse-{method}")

    def start(self) -> "SseReader":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            headers = self.raw.headers("text/event-stream" if self.method == "GET" else "application/json, text/event-stream")
            kw: dict[str, Any] = {"headers": headers}
            if self.body is not None:
                kw["json"] = self.body
            with self.raw.http.stream(self.method, self.raw.url, **kw) as resp:
                self.status = resp.status_code
                self.content_type = resp.headers.get("content-type", "")
                self.opened.set()
                for ev in iter_sse(resp.iter_lines()):
                    if not ev.data:
                        continue  # a priming event (an id for resumption, no message)
                    self.events.append((time.monotonic(), ev))
                    self.got_event.set()
        except BaseException as e:  # a torn connection shows up here
            self.error = e
        finally:
            self.ended_at = time.monotonic()
            self.opened.set()
            self.done.set()

    def jsonrpc_errors(self) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for t, ev in self.events:
            try:
                msg = ev.json()
            except ValueError:
                continue
            if isinstance(msg, dict) and "error" in msg:
                out.append((t, msg))
        return out
