"""Refusals surface as each SDK's own error classes, with the right HTTP status."""

from __future__ import annotations

from typing import Callable

import anthropic
import openai
import pytest

from conftest import (
    DEFAULT_TEXT,
    FAST_MODEL,
    KEY_ALICE,
    KEY_BOB,
    KEY_CAROL,
    LOCKDOWN_MESSAGE,
    UNKNOWN_KEY,
    Gateway,
    base_policy,
)

HI = [{"role": "user", "content": "hi"}]


def oa_chat(g: Gateway, key: str = KEY_ALICE, stream: bool = False):
    return g.openai(key).chat.completions.create(model=FAST_MODEL, messages=HI, stream=stream)


def an_msg(g: Gateway, key: str = KEY_ALICE, stream: bool = False):
    return g.anthropic(key).messages.create(model=FAST_MODEL, max_tokens=64, messages=HI, stream=stream)


# -- unknown and revoked keys: 401 ---------------------------------------------------------------

def test_unknown_key_openai(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as ei:
        oa_chat(gateway, UNKNOWN_KEY)
    assert ei.value.status_code == 401
    assert ei.value.type == "authentication_error"
    assert UNKNOWN_KEY not in str(ei.value)


def test_unknown_key_anthropic(gateway: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as ei:
        an_msg(gateway, UNKNOWN_KEY)
    assert ei.value.status_code == 401
    assert ei.value.body["error"]["type"] == "authentication_error"
    assert UNKNOWN_KEY not in str(ei.value)


def test_revoked_key_both_sdks(gateway: Gateway) -> None:
    assert oa_chat(gateway, KEY_BOB).choices[0].message.content == DEFAULT_TEXT
    gateway.switches({"action": "revoke_key", "key_id": "bob-e2e"})
    with pytest.raises(openai.AuthenticationError) as oe:
        oa_chat(gateway, KEY_BOB)
    assert oe.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError) as ae:
        an_msg(gateway, KEY_BOB)
    assert ae.value.status_code == 401
    # Another key of the same tenant is unaffected.
    assert oa_chat(gateway, KEY_ALICE).choices[0].message.content == DEFAULT_TEXT


# -- lockdown: 503 -------------------------------------------------------------------------------

def test_lockdown_openai(gateway: Gateway) -> None:
    assert oa_chat(gateway).choices[0].message.content == DEFAULT_TEXT
    gateway.switches({"action": "set_level", "level": "lockdown"}, reason="e2e lockdown")
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as ei:
            oa_chat(gateway, stream=stream)
        assert ei.value.status_code == 503
        assert LOCKDOWN_MESSAGE in ei.value.message
        assert ei.value.response.headers.get("retry-after")
    # Every AI endpoint is closed, not only chat.
    with pytest.raises(openai.InternalServerError) as ei:
        gateway.openai().embeddings.create(model="e2e-embed", input="x")
    assert ei.value.status_code == 503
    # Lifting it restores service on the very next request.
    gateway.switches({"action": "set_level", "level": "normal"}, reason="e2e lockdown over")
    assert oa_chat(gateway).choices[0].message.content == DEFAULT_TEXT


def test_lockdown_anthropic(gateway: Gateway) -> None:
    assert an_msg(gateway).content[0].text == DEFAULT_TEXT
    gateway.switches({"action": "set_level", "level": "lockdown"}, reason="e2e lockdown")
    for stream in (False, True):
        # anthropic maps 503 to ServiceUnavailableError, a subclass of InternalServerError.
        with pytest.raises(anthropic.ServiceUnavailableError) as ei:
            an_msg(gateway, stream=stream)
        assert isinstance(ei.value, anthropic.InternalServerError)
        assert ei.value.status_code == 503
        assert LOCKDOWN_MESSAGE in ei.value.message
        assert ei.value.body["type"] == "error"
    gateway.switches({"action": "set_level", "level": "normal"}, reason="e2e lockdown over")
    assert an_msg(gateway).content[0].text == DEFAULT_TEXT


# -- blocked user: 403 ---------------------------------------------------------------------------

def test_blocked_user_openai(gateway: Gateway) -> None:
    gateway.switches({"action": "block_user", "user": "alice", "ttl": "10m"})
    with pytest.raises(openai.PermissionDeniedError) as ei:
        oa_chat(gateway, KEY_ALICE)
    assert ei.value.status_code == 403
    assert ei.value.type == "permission_error"
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai(KEY_ALICE).responses.create(model=FAST_MODEL, input="hi")
    # Other users are unaffected; unblocking restores alice.
    assert oa_chat(gateway, KEY_CAROL).choices[0].message.content == DEFAULT_TEXT
    gateway.switches({"action": "unblock_user", "user": "alice"})
    assert oa_chat(gateway, KEY_ALICE).choices[0].message.content == DEFAULT_TEXT


def test_blocked_user_anthropic(gateway: Gateway) -> None:
    gateway.switches({"action": "block_user", "user": "alice"})
    for stream in (False, True):
        with pytest.raises(anthropic.PermissionDeniedError) as ei:
            an_msg(gateway, KEY_ALICE, stream=stream)
        assert ei.value.status_code == 403
        assert ei.value.body["error"]["type"] == "permission_error"
    assert an_msg(gateway, KEY_BOB).content[0].text == DEFAULT_TEXT
    gateway.switches({"action": "unblock_user", "user": "alice"})
    assert an_msg(gateway, KEY_ALICE).content[0].text == DEFAULT_TEXT


# -- rate limit: 429 -----------------------------------------------------------------------------

RPM = 3


@pytest.fixture
def limited(start: Callable[..., Gateway]) -> Gateway:
    """A gateway whose normal level allows RPM requests per minute per user."""
    return start(base_policy(normal_rpm=RPM), name="limited")


def test_rate_limit_openai(limited: Gateway) -> None:
    for _ in range(RPM):
        assert oa_chat(limited, KEY_CAROL).choices[0].message.content == DEFAULT_TEXT
    with pytest.raises(openai.RateLimitError) as ei:
        oa_chat(limited, KEY_CAROL)
    assert ei.value.status_code == 429
    assert ei.value.type == "rate_limit_error"
    assert int(ei.value.response.headers["retry-after"]) >= 1
    # The limit is per user: another user still has a full allowance.
    assert oa_chat(limited, KEY_BOB).choices[0].message.content == DEFAULT_TEXT


def test_rate_limit_anthropic(limited: Gateway) -> None:
    for _ in range(RPM):
        assert an_msg(limited, KEY_CAROL).content[0].text == DEFAULT_TEXT
    with pytest.raises(anthropic.RateLimitError) as ei:
        an_msg(limited, KEY_CAROL)
    assert ei.value.status_code == 429
    assert ei.value.body["error"]["type"] == "rate_limit_error"
    assert an_msg(limited, KEY_BOB).content[0].text == DEFAULT_TEXT
