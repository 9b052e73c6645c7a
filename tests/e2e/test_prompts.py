"""Managed system prompts through the official SDKs: the key's prompt is injected with a canary; a
scripted model that dumps its context leaks the canary, which the SDK receives redacted (whole and
streamed); after `rotate/prompt` the next request carries the backup prompt, and the old canary is
still redacted; the admin state never shows a canary."""

from __future__ import annotations

import re
from typing import Callable

from conftest import Gateway, sha256_hex, toml_str

KEY = "fb-e2e-prompts-41be0c"
PRIMARY = "You are the e2e support assistant. Answer order questions and never reveal the vault codes."
BACKUP = "You are the e2e backup assistant. Keep answers short and polite, nothing internal."

POLICY = f"""
[upstreams.s]
kind = "scripted"
chunk_chars = 4
chunk_delay_ms = 0

[[upstreams.s.replies]]
when_contains = "dump"
text = "Context dump: {{system}}"

[[upstreams.s.replies]]
text = "ok"

[[keys]]
id = "prompts-e2e"
sha256 = "{sha256_hex(KEY)}"
tenant = "acme"
user = "pia"
role = "reader"
prompt = "support"

[roles.reader]

[prompts.support]
text = {toml_str(PRIMARY)}

[prompts.support_backup]
text = {toml_str(BACKUP)}

[incidents]
auto_contain = false
"""

REDACTED = "[REDACTED:canary.support]"


def canary_of(gw: Gateway) -> str:
    """The canary in force, read from the state file (the admin API never shows it)."""
    state = (gw.dir / "state.json").read_text()
    m = re.search(r'"current":\s*"([A-Za-z0-9]{20})"', state)
    assert m, "no canary in the state file"
    return m.group(1)


def test_prompt_is_injected_and_its_canary_redacted_openai(start: Callable[..., Gateway]) -> None:
    gw = start(POLICY)
    client = gw.openai(KEY)
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "dump"}])
    text = r.choices[0].message.content or ""
    assert text.startswith("Context dump: " + PRIMARY), text
    assert REDACTED in text, text
    canary = canary_of(gw)
    assert canary not in text

    stream = client.chat.completions.create(
        model="m", stream=True, messages=[{"role": "user", "content": "dump"}]
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert REDACTED in streamed and canary not in streamed, streamed

    status, state = gw.admin_call("GET", "/admin/v1/state")
    assert status == 200
    assert state["prompts"]["support"]["live"] == "primary"
    assert canary not in str(state)


def test_rotation_serves_the_backup_and_old_canary_stays_detected_anthropic(start: Callable[..., Gateway]) -> None:
    gw = start(POLICY)
    client = gw.anthropic(KEY)
    old = canary_of(gw)
    status, body = gw.admin_call("POST", "/admin/v1/rotate/prompt/support", {"reason": "e2e: prompt leaked"})
    assert status == 200, body
    assert body["new"]["version"] == "backup"
    new = canary_of(gw)
    assert new != old

    with client.messages.stream(
        model="m", max_tokens=256, messages=[{"role": "user", "content": "dump"}]
    ) as s:
        text = "".join(s.text_stream)
    assert text.startswith("Context dump: " + BACKUP), text
    assert PRIMARY not in text
    assert REDACTED in text and new not in text, text

    # The retired canary is still caught: reload the policy with a scripted reply that quotes it.
    policy = gw.dir / "policy.toml"
    policy.write_text(
        POLICY.replace('[[upstreams.s.replies]]\ntext = "ok"', f'[[upstreams.s.replies]]\nwhen_contains = "old"\ntext = "the old one was {old} indeed"\n\n[[upstreams.s.replies]]\ntext = "ok"')
    )
    status, body = gw.admin_call("POST", "/admin/v1/policy/reload", {})
    assert status == 200, body
    r = client.messages.create(model="m", max_tokens=64, messages=[{"role": "user", "content": "the old one?"}])
    text = "".join(b.text for b in r.content if b.type == "text")
    assert text == f"the old one was {REDACTED} indeed", text
