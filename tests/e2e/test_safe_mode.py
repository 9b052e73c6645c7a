"""Safe mode: the model is not asked; both SDKs receive the policy's pre-approved reply, in JSON and
in streams, in each API's own format."""

from __future__ import annotations

from conftest import FAST_MODEL, SAFE_MODE_TEXT, STORY_TEXT, Gateway

ASK = [{"role": "user", "content": "tell me a story"}]


def test_safe_mode_openai(gateway: Gateway) -> None:
    client = gateway.openai()
    assert client.chat.completions.create(model=FAST_MODEL, messages=ASK).choices[0].message.content == STORY_TEXT
    gateway.switches({"action": "safe_mode", "enabled": True}, reason="e2e safe mode")

    resp = client.chat.completions.create(model=FAST_MODEL, messages=ASK)
    assert resp.choices[0].message.content == SAFE_MODE_TEXT
    assert resp.choices[0].finish_reason == "stop"

    stream = client.chat.completions.create(model=FAST_MODEL, messages=ASK, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == SAFE_MODE_TEXT

    assert client.responses.create(model=FAST_MODEL, input="tell me a story").output_text == SAFE_MODE_TEXT
    rstream = client.responses.create(model=FAST_MODEL, input="tell me a story", stream=True)
    assert "".join(e.delta for e in rstream if e.type == "response.output_text.delta") == SAFE_MODE_TEXT

    gateway.switches({"action": "safe_mode", "enabled": False}, reason="e2e safe mode over")
    assert client.chat.completions.create(model=FAST_MODEL, messages=ASK).choices[0].message.content == STORY_TEXT


def test_safe_mode_anthropic(gateway: Gateway) -> None:
    client = gateway.anthropic()
    assert client.messages.create(model=FAST_MODEL, max_tokens=256, messages=ASK).content[0].text == STORY_TEXT
    gateway.switches({"action": "safe_mode", "enabled": True}, reason="e2e safe mode")

    msg = client.messages.create(model=FAST_MODEL, max_tokens=256, messages=ASK)
    assert msg.content[0].text == SAFE_MODE_TEXT
    assert msg.stop_reason == "end_turn"

    with client.messages.stream(model=FAST_MODEL, max_tokens=256, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == SAFE_MODE_TEXT
    assert final.content[0].text == SAFE_MODE_TEXT

    gateway.switches({"action": "safe_mode", "enabled": False}, reason="e2e safe mode over")
    assert client.messages.create(model=FAST_MODEL, max_tokens=256, messages=ASK).content[0].text == STORY_TEXT
