"""The official `openai` SDK through the gateway: every OpenAI-style endpoint, JSON and streamed."""

from __future__ import annotations

import openai

from conftest import DEFAULT_TEXT, FAST_MODEL, STORY_TEXT, WEATHER_TEXT, Gateway


def test_chat_completion(gateway: Gateway) -> None:
    client = gateway.openai()
    resp = client.chat.completions.create(model=FAST_MODEL, messages=[{"role": "user", "content": "hi there"}])
    assert resp.object == "chat.completion"
    assert resp.model == FAST_MODEL
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == DEFAULT_TEXT
    assert choice.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0


def test_chat_completion_picks_scripted_reply_by_content(gateway: Gateway) -> None:
    client = gateway.openai()
    resp = client.chat.completions.create(
        model=FAST_MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what's the weather in Oslo?"},
        ],
    )
    assert resp.choices[0].message.content == WEATHER_TEXT


def test_chat_completion_carries_request_id(gateway: Gateway) -> None:
    client = gateway.openai()
    raw = client.chat.completions.with_raw_response.create(model=FAST_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers.get("x-request-id"), dict(raw.headers)
    assert raw.parse().choices[0].message.content == DEFAULT_TEXT


def test_chat_completion_stream(gateway: Gateway) -> None:
    client = gateway.openai()
    stream = client.chat.completions.create(
        model=FAST_MODEL, stream=True, messages=[{"role": "user", "content": "tell me a story"}]
    )
    pieces: list[str] = []
    finish_reasons: list[str] = []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    assert "".join(pieces) == STORY_TEXT
    assert len(pieces) > 1, "the scripted reply should arrive in several deltas"
    assert finish_reasons == ["stop"]


def test_responses_create(gateway: Gateway) -> None:
    client = gateway.openai()
    resp = client.responses.create(model=FAST_MODEL, input="what's the weather like?")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.output_text == WEATHER_TEXT


def test_responses_create_stream(gateway: Gateway) -> None:
    client = gateway.openai()
    stream = client.responses.create(model=FAST_MODEL, input="tell me a story", stream=True)
    deltas: list[str] = []
    types: list[str] = []
    completed = None
    for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    assert "".join(deltas) == STORY_TEXT
    assert len(deltas) > 1
    assert types[0] == "response.created"
    assert completed is not None and completed.output_text == STORY_TEXT


def test_responses_stream_helper(gateway: Gateway) -> None:
    client = gateway.openai()
    with client.responses.stream(model=FAST_MODEL, input="tell me a story") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == STORY_TEXT
    assert final.output_text == STORY_TEXT


def test_embeddings(gateway: Gateway) -> None:
    client = gateway.openai()
    resp = client.embeddings.create(model="e2e-embed", input=["alpha", "beta", "gamma"])
    assert [d.index for d in resp.data] == [0, 1, 2]
    for d in resp.data:
        assert len(d.embedding) > 0
        assert all(isinstance(x, float) for x in d.embedding)


def test_models_list(gateway: Gateway) -> None:
    client = gateway.openai()
    models = list(client.models.list())
    assert len(models) >= 1
    assert all(m.object == "model" and m.id for m in models)


def test_malformed_request_is_an_sdk_bad_request(gateway: Gateway) -> None:
    # A body the gateway cannot use (`tools` not an array) is refused in OpenAI's error shape, so
    # the SDK raises its own 400 class.
    client = gateway.openai()
    try:
        client.chat.completions.create(
            model=FAST_MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"tools": "not-an-array"}
        )
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert isinstance(e.body, dict) and "tools" in str(e.body.get("message"))
        assert e.type == "invalid_request_error"
    else:
        raise AssertionError("`tools` that is not an array should be refused with 400")
