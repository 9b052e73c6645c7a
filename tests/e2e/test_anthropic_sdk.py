"""The official `anthropic` SDK through the gateway: messages, JSON and streamed."""

from __future__ import annotations

from conftest import DEFAULT_TEXT, FAST_MODEL, STORY_TEXT, WEATHER_TEXT, Gateway


def test_message(gateway: Gateway) -> None:
    client = gateway.anthropic()
    msg = client.messages.create(model=FAST_MODEL, max_tokens=256, messages=[{"role": "user", "content": "hi there"}])
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.model == FAST_MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == DEFAULT_TEXT
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0


def test_message_with_content_blocks(gateway: Gateway) -> None:
    client = gateway.anthropic()
    msg = client.messages.create(
        model=FAST_MODEL,
        max_tokens=256,
        system="be brief",
        messages=[{"role": "user", "content": [{"type": "text", "text": "how is the weather?"}]}],
    )
    assert msg.content[0].text == WEATHER_TEXT


def test_message_carries_request_id(gateway: Gateway) -> None:
    client = gateway.anthropic()
    raw = client.messages.with_raw_response.create(model=FAST_MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers.get("request-id") or raw.headers.get("x-request-id"), dict(raw.headers)
    assert raw.parse().content[0].text == DEFAULT_TEXT


def test_message_stream(gateway: Gateway) -> None:
    client = gateway.anthropic()
    with client.messages.stream(
        model=FAST_MODEL, max_tokens=512, messages=[{"role": "user", "content": "tell me a story"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == STORY_TEXT
    assert len(pieces) > 1, "the scripted reply should arrive in several deltas"
    assert final.content[0].text == STORY_TEXT
    assert final.stop_reason == "end_turn"


def test_message_stream_raw_events(gateway: Gateway) -> None:
    client = gateway.anthropic()
    stream = client.messages.create(
        model=FAST_MODEL, max_tokens=512, stream=True, messages=[{"role": "user", "content": "tell me a story"}]
    )
    types: list[str] = []
    text: list[str] = []
    for event in stream:
        types.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text.append(event.delta.text)
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert "".join(text) == STORY_TEXT
