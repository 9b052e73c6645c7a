"""A switch flipped while a stream is in flight ends it with a terminal error event that the SDK
raises as its own error, within a deadline (the spec promises 100 ms; the test allows slack for a
loaded CI machine but far less than the ~12 s the scripted stream would otherwise run)."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from conftest import KEY_ALICE, KEY_BOB, LONG_TEXT, SHORT_SLOW_TEXT, SLOW_MODEL, Gateway

CUT_DEADLINE_S = 3.0


def test_openai_chat_stream_cut_by_block_user(gateway: Gateway) -> None:
    stream = gateway.openai(KEY_ALICE).chat.completions.create(
        model=SLOW_MODEL, stream=True, messages=[{"role": "user", "content": "a long one please"}]
    )
    it = iter(stream)
    got = ""
    while not got:  # first content delta (the role-only chunk comes first)
        chunk = next(it)
        got += "".join(c.delta.content or "" for c in chunk.choices)
    gateway.switches({"action": "block_user", "user": "alice", "ttl": "10m"}, reason="e2e: cut alice mid-stream")
    flipped = time.monotonic()
    with pytest.raises(openai.APIError) as ei:
        for chunk in it:
            got += "".join(c.delta.content or "" for c in chunk.choices)
            assert time.monotonic() - flipped < CUT_DEADLINE_S, "stream still flowing after the user was blocked"
    elapsed = time.monotonic() - flipped
    assert elapsed < CUT_DEADLINE_S
    assert not isinstance(ei.value, openai.APIConnectionError), "expected a clean error event, not a torn connection"
    assert isinstance(ei.value.body, dict) and ei.value.body.get("type") == "permission_error", ei.value.body
    assert ei.value.body.get("code") == "stream_terminated"
    assert LONG_TEXT.startswith(got) and len(got) < len(LONG_TEXT)


def test_openai_responses_stream_cut_by_block_user(gateway: Gateway) -> None:
    stream = gateway.openai(KEY_ALICE).responses.create(model=SLOW_MODEL, input="a long one please", stream=True)
    it = iter(stream)
    got = ""
    while not got:
        event = next(it)
        if event.type == "response.output_text.delta":
            got += event.delta
    gateway.switches({"action": "block_user", "user": "alice"}, reason="e2e: cut alice mid-stream")
    flipped = time.monotonic()
    with pytest.raises(openai.APIError) as ei:
        for event in it:
            if event.type == "response.output_text.delta":
                got += event.delta
            assert time.monotonic() - flipped < CUT_DEADLINE_S, "stream still flowing after the user was blocked"
    assert time.monotonic() - flipped < CUT_DEADLINE_S
    assert not isinstance(ei.value, openai.APIConnectionError)
    assert "suspended" in ei.value.message
    assert LONG_TEXT.startswith(got) and len(got) < len(LONG_TEXT)


def test_anthropic_stream_cut_by_block_user(gateway: Gateway) -> None:
    client = gateway.anthropic(KEY_ALICE)
    got = ""
    with client.messages.stream(
        model=SLOW_MODEL, max_tokens=4096, messages=[{"role": "user", "content": "a long one please"}]
    ) as stream:
        texts = iter(stream.text_stream)
        got += next(texts)
        gateway.switches({"action": "block_user", "user": "alice", "ttl": "10m"}, reason="e2e: cut alice mid-stream")
        flipped = time.monotonic()
        with pytest.raises(anthropic.APIStatusError) as ei:
            for t in texts:
                got += t
                assert time.monotonic() - flipped < CUT_DEADLINE_S, "stream still flowing after the user was blocked"
    assert time.monotonic() - flipped < CUT_DEADLINE_S
    body = ei.value.body
    assert isinstance(body, dict) and body.get("type") == "error", body
    assert body["error"]["type"] == "permission_error"
    assert LONG_TEXT.startswith(got) and len(got) < len(LONG_TEXT)


def test_block_of_one_user_leaves_other_streams_alone(gateway: Gateway) -> None:
    # bob's stream runs to the end while alice is blocked mid-way through it.
    stream = gateway.anthropic(KEY_BOB).messages.create(
        model=SLOW_MODEL, max_tokens=4096, stream=True, messages=[{"role": "user", "content": "a short one"}]
    )
    got = ""
    blocked = False
    for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            got += event.delta.text
            if not blocked:
                gateway.switches({"action": "block_user", "user": "alice"}, reason="e2e: block someone else")
                blocked = True
    assert blocked
    assert got == SHORT_SLOW_TEXT
