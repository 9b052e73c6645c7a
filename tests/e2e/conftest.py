"""Fixtures for the end-to-end suite: the real `firebreak` binary, driven by the official SDKs.

Nothing is built here. The binary comes from $FIREBREAK_BIN (default: target/debug/firebreak under
the repository root); `bash tests/run.sh` builds it first. A missing binary is a failure, never a skip.

Each test gets a fresh gateway: a policy written into a temp dir, `firebreak serve` on ephemeral
loopback ports, readiness taken from the ready file (polled against a deadline), SIGTERM on teardown.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-8c1f0a7d2b"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0

# Virtual keys handed to the SDKs. The policy stores only their SHA-256.
KEY_ALICE = "fb-e2e-alice-6f2d1c"  # tenant acme, role developer
KEY_BOB = "fb-e2e-bob-93ab77"  # tenant acme, role developer
KEY_CAROL = "fb-e2e-carol-0d4e55"  # tenant globex, role analyst
UNKNOWN_KEY = "fb-e2e-nobody-000000"  # not in the policy

# Scripted upstream replies (first match on the last user message wins).
STORY_TEXT = (
    "Once upon a time a gateway read every stream that flowed through it, chunk by chunk, "
    "and when the security lead flipped a switch it closed the door at once, politely."
)
WEATHER_TEXT = "I would call the get_weather tool for that, if the policy lets me."
DEFAULT_TEXT = "Hello from the firebreak e2e scripted upstream."
SAFE_MODE_TEXT = "Safe mode is on: only this pre-approved answer is given while the security team investigates."
LOCKDOWN_MESSAGE = "E2E lockdown: the AI service is closed for maintenance."
# A long reply for the slow upstream (~1 800 chars in 3-char chunks every 20 ms: about 12 s), so a
# switch flipped after the first delta always lands mid-stream.
LONG_TEXT = " ".join(f"sentence {i} of a long scripted story that keeps on streaming." for i in range(30))
# A reply on the slow upstream that finishes in about a second.
SHORT_SLOW_TEXT = "A short slow reply, streamed three characters at a time, to the very end."

FAST_MODEL = "e2e-model"
SLOW_MODEL = "slow-e2e-model"


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid TOML basic string for this ASCII text


def base_policy(*, normal_rpm: int | None = None) -> str:
    """The test policy: two scripted upstreams (fast, and slow for mid-stream cuts), hashed keys,
    roles with tool allowlists, a lockdown message and a safe-mode reply."""
    levels_normal = f"\n[levels.normal]\nrequests_per_minute = {normal_rpm}\n" if normal_rpm is not None else ""
    return f"""
[admin]
token_env = "FIREBREAK_ADMIN_TOKEN"

[upstreams.fast]
kind = "scripted"
chunk_chars = 7
chunk_delay_ms = 1

[[upstreams.fast.replies]]
when_contains = "story"
text = {toml_str(STORY_TEXT)}

[[upstreams.fast.replies]]
when_contains = "weather"
text = {toml_str(WEATHER_TEXT)}

[[upstreams.fast.replies]]
text = {toml_str(DEFAULT_TEXT)}

[upstreams.slow]
kind = "scripted"
chunk_chars = 3
chunk_delay_ms = 20

[[upstreams.slow.replies]]
when_contains = "short"
text = {toml_str(SHORT_SLOW_TEXT)}

[[upstreams.slow.replies]]
text = {toml_str(LONG_TEXT)}

# First matching route wins: the slow model goes to the slow upstream, everything else to fast.
[[routes]]
api = "openai"
upstream = "slow"
models = ["slow-*"]

[[routes]]
api = "openai"
upstream = "fast"

[[routes]]
api = "anthropic"
upstream = "slow"
models = ["slow-*"]

[[routes]]
api = "anthropic"
upstream = "fast"

[[keys]]
id = "alice-e2e"
sha256 = "{sha256_hex(KEY_ALICE)}"
tenant = "acme"
user = "alice"
role = "developer"

[[keys]]
id = "bob-e2e"
sha256 = "{sha256_hex(KEY_BOB)}"
tenant = "acme"
user = "bob"
role = "developer"

[[keys]]
id = "carol-e2e"
sha256 = "{sha256_hex(KEY_CAROL)}"
tenant = "globex"
user = "carol"
role = "analyst"

[roles.developer]
tools = ["get_weather", "search_*", "send_email"]

[roles.analyst]
tools = ["search_*"]

[tools.get_weather]
side_effects = false

[tools.search_docs]
side_effects = false

[tools.send_email]
side_effects = true

[levels.lockdown]
message = {toml_str(LOCKDOWN_MESSAGE)}
{levels_normal}
[safe_mode]
reply = {toml_str(SAFE_MODE_TEXT)}

# These tests leak and refuse on purpose and go on with the same user: incidents open, but no
# containment plan runs by itself (monitor mode). tests/incidents.rs covers automatic containment.
[incidents]
auto_contain = false
"""


def firebreak_bin() -> Path:
    raw = os.environ.get("FIREBREAK_BIN", "target/debug/firebreak")
    p = Path(raw)
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


@dataclass
class Gateway:
    """A running `firebreak serve`."""

    proc: subprocess.Popen[bytes]
    proxy: str  # host:port
    admin: str  # host:port
    dir: Path
    log_path: Path
    _log: Any = field(repr=False, default=None)

    # -- clients -------------------------------------------------------------------------------
    def openai(self, key: str = KEY_ALICE, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return openai.OpenAI(base_url=f"http://{self.proxy}/v1", api_key=key, **kw)

    def anthropic(self, key: str = KEY_ALICE, **kw: Any) -> anthropic.Anthropic:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 30.0)
        return anthropic.Anthropic(base_url=f"http://{self.proxy}", api_key=key, **kw)

    # -- admin API -----------------------------------------------------------------------------
    def admin_call(self, method: str, path: str, body: Any | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.admin}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def switches(self, *actions: dict[str, Any], reason: str = "e2e test") -> dict[str, Any]:
        status, body = self.admin_call("POST", "/admin/v1/switches", {"actions": list(actions), "reason": reason, "actor": "e2e"})
        assert status == 200, f"switch batch {actions} refused: {status} {body}"
        assert body.get("applied") is True, body
        return body

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE_S)
        if self._log is not None:
            self._log.close()
            self._log = None


def start_gateway(bin_path: Path, workdir: Path, policy: str, extra_env: dict[str, str] | None = None) -> Gateway:
    workdir.mkdir(parents=True, exist_ok=True)
    policy_path = workdir / "policy.toml"
    policy_path.write_text(policy)
    ready = workdir / "ready.json"
    log_path = workdir / "gateway.log"
    log = open(log_path, "wb")
    env = dict(os.environ, FIREBREAK_ADMIN_TOKEN=ADMIN_TOKEN, NO_COLOR="1", **(extra_env or {}))
    cmd = [
        str(bin_path), "serve",
        "--policy", str(policy_path),
        "--listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0",
        "--state-file", str(workdir / "state.json"),
        "--audit-file", str(workdir / "audit.jsonl"),
        "--ready-file", str(ready),
    ]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_DEADLINE_S
    doc = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"firebreak exited with status {proc.returncode} before it was ready:\n{log_path.read_text(errors='replace')}")
        if ready.exists():
            try:
                doc = json.loads(ready.read_text())
                if doc.get("proxy") and doc.get("admin"):
                    break
            except ValueError:
                pass  # written atomically, but be tolerant
        time.sleep(0.02)  # polling interval, not synchronisation: the deadline bounds the wait
    else:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"firebreak did not write {ready} within {START_DEADLINE_S} s:\n{log_path.read_text(errors='replace')}")
    assert doc["pid"] == proc.pid, f"ready file names pid {doc['pid']}, expected {proc.pid}"
    return Gateway(proc=proc, proxy=doc["proxy"], admin=doc["admin"], dir=workdir, log_path=log_path, _log=log)


@pytest.fixture(scope="session")
def bin_path() -> Path:
    p = firebreak_bin()
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(
            f"firebreak binary not found or not executable at {p}. "
            "Build it first (`cargo build`, or run `bash tests/run.sh`), or set FIREBREAK_BIN.",
            pytrace=False,
        )
    return p


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def start(bin_path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Gateway]]:
    """Factory: start(policy=..., name=..., env=...) -> Gateway; every gateway started is stopped on teardown
    (and its log printed when the test failed)."""
    started: list[Gateway] = []

    def _start(policy: str | None = None, name: str = "gw", env: dict[str, str] | None = None) -> Gateway:
        g = start_gateway(bin_path, tmp_path / name, policy if policy is not None else base_policy(), env)
        started.append(g)
        return g

    yield _start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for g in started:
        g.stop()
        if failed:
            print(f"--- gateway log ({g.log_path}) ---\n{g.log()}")


@pytest.fixture
def gateway(start: Callable[..., Gateway]) -> Gateway:
    """A fresh gateway on the default test policy."""
    return start()


def wait_until(pred: Callable[[], bool], deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
