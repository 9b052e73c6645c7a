"""Fleet mode with the official openai SDK: three replicas "A", "B", "C" share one PostgreSQL database
and one Redis prefix (docs/design/fleet-mode.md §11.2). A stream through replica C is cut, with an
error event the SDK raises as its own error, when a lockdown is applied on replica A.

Needs PostgreSQL and Redis on loopback (`bash tests/fleet-services.sh`, which tests/run.sh runs
first). Without them the test fails and says so; it never skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from typing import Callable, Iterator

import openai
import pytest

from conftest import KEY_ALICE, KEY_BOB, LOCKDOWN_MESSAGE, LONG_TEXT, SLOW_MODEL, Gateway, base_policy, wait_until

PG_ADMIN_URL = os.environ.get("FIREBREAK_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432
CUT_DEADLINE_S = 2.0
LIVE_DEADLINE_S = 20.0


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _psql(sql: str) -> None:
    out = subprocess.run(["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"psql {sql!r}: {out.stderr}"


def _redis_delete_prefix(prefix: str) -> None:
    keys = subprocess.run(
        ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "--scan", "--pattern", f"{prefix}:*"],
        capture_output=True, text=True, timeout=30,
    ).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "DEL", *keys[i : i + 500]], capture_output=True, timeout=30)


def fleet_policy(prefix: str) -> str:
    return base_policy() + f"""
[fleet]
postgres_url_env = "FIREBREAK_POSTGRES_URL"
redis_url_env = "FIREBREAK_REDIS_URL"
redis_prefix = "{prefix}"
poll_interval = "500ms"
heartbeat_interval = "250ms"
live_after = "2s"
"""


@pytest.fixture
def fleet(start: Callable[..., Gateway]) -> Iterator[list[Gateway]]:
    """Replicas A, B, C on a fresh database `fbt_py_<hex>` and Redis prefix `fbt-py-<hex>`, started
    like conftest starts one gateway; returned once GET /admin/v1/fleet lists all three live."""
    for name, host, port in (("PostgreSQL", PG_HOST, PG_PORT), ("Redis", REDIS_HOST, REDIS_PORT)):
        if not _reachable(host, port):
            pytest.fail(f"fleet tests need {name} on {host}:{port}: run `bash tests/fleet-services.sh` (CI does)", pytrace=False)
    owner = os.environ.get("FIREBREAK_TEST_TAG", "").lower()  # namespaces parallel users of one server
    tag = uuid.uuid4().hex[:10]
    db = f"fbt_{owner}_py_{tag}" if owner else f"fbt_py_{tag}"
    prefix = f"{owner}-fbt-py-{tag}" if owner else f"fbt-py-{tag}"
    _psql(f'CREATE DATABASE "{db}"')
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    env = {"FIREBREAK_POSTGRES_URL": f"{base}/{db}", "FIREBREAK_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/"}
    replicas: list[Gateway] = []
    try:
        for rid in ("A", "B", "C"):
            replicas.append(start(fleet_policy(prefix), name=rid, env=dict(env, FIREBREAK_REPLICA_ID=rid)))
        last: list[object] = [None]

        def all_live() -> bool:
            status, body = replicas[0].admin_call("GET", "/admin/v1/fleet")
            last[0] = (status, body)
            if status == 404:
                pytest.fail(f"GET /admin/v1/fleet is missing (fleet mode not built, design §6): {body}", pytrace=False)
            return status == 200 and sum(1 for r in body.get("replicas", []) if r.get("live")) >= 3

        try:
            wait_until(all_live, LIVE_DEADLINE_S, "GET /admin/v1/fleet to list A, B, C live")
        except AssertionError as e:
            raise AssertionError(f"{e}; last answer: {last[0]}") from None
        yield replicas
    finally:
        for g in replicas:
            g.stop()  # before the database goes (start's own teardown then finds them stopped)
        _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        _redis_delete_prefix(prefix)


def test_lockdown_on_a_cuts_an_sdk_stream_on_c(fleet: list[Gateway]) -> None:
    a, b, c = fleet
    stream = c.openai(KEY_ALICE).chat.completions.create(
        model=SLOW_MODEL, stream=True, messages=[{"role": "user", "content": "a long one please"}]
    )
    it = iter(stream)
    got = ""
    while not got:  # the first content delta (the role-only chunk comes first)
        chunk = next(it)
        got += "".join(ch.delta.content or "" for ch in chunk.choices)
    a.switches({"action": "set_level", "level": "lockdown"}, reason="e2e fleet: lockdown from A")
    flipped = time.monotonic()
    with pytest.raises(openai.APIError) as ei:
        for chunk in it:
            got += "".join(ch.delta.content or "" for ch in chunk.choices)
            assert time.monotonic() - flipped < CUT_DEADLINE_S, "the stream on C still flows after the lockdown on A"
    elapsed = time.monotonic() - flipped
    print(f"lockdown on A -> SDK stream on C ended after {elapsed * 1000:.0f} ms")
    assert elapsed < CUT_DEADLINE_S
    assert not isinstance(ei.value, openai.APIConnectionError), "a clean error event, not a torn connection"
    assert LONG_TEXT.startswith(got) and len(got) < len(LONG_TEXT)

    # Every replica now refuses with the lockdown message.
    for g in (b, c):
        with pytest.raises(openai.APIStatusError) as refused:
            g.openai(KEY_BOB).chat.completions.create(model="e2e-model", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 503
        assert LOCKDOWN_MESSAGE in str(refused.value.message), refused.value.message
