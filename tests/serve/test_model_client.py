"""app.chat_client.ModelClient against our real server on loopback (tiny random llama): streamed and whole
answers agree, usage numbers arrive, a cancelled stream keeps what came, errors surface as openai errors."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai
import pytest

from app.chat_client import Answer, ModelClient, clean_params, request_messages, schema_response_format
from engine.ports import free_port
from tests.serve.conftest import API_KEY, SERVED_NAME

GREEDY = {"temperature": 0.0, "max_tokens": 12, "seed": 1}
MESSAGES = request_messages("You are brief.", [("user", "Count: one, two,")])


async def test_stream_and_whole_answer_agree_with_usage(served):
    client = ModelClient(served.base_url)
    assert await client.ready()
    deltas = []
    streamed = await client.stream_chat(SERVED_NAME, MESSAGES, GREEDY, on_delta=lambda: deltas.append(1))
    whole = await client.chat(SERVED_NAME, MESSAGES, GREEDY)
    assert streamed.text and streamed.text == whole.text
    assert len(deltas) >= 2  # it did stream, piece by piece
    for answer in (streamed, whole):
        assert answer.completion_tokens == 12 and answer.finish_reason == "length"
        assert answer.prompt_tokens > 5 and answer.tokens_per_s > 0
    # Our own sampling settings travel in extra_body: top_k=1 is greedy too, whatever the temperature.
    top1 = await client.chat(SERVED_NAME, MESSAGES, {**GREEDY, "temperature": 1.5, "top_k": 1})
    assert top1.text == whole.text


async def test_cancelled_stream_keeps_what_came(served):
    client, answer = ModelClient(served.base_url), Answer()
    first = asyncio.Event()
    task = asyncio.create_task(client.stream_chat(SERVED_NAME, MESSAGES, {**GREEDY, "max_tokens": 400},
                                                  answer=answer, on_delta=first.set))
    await asyncio.wait_for(first.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert answer.text and answer.completion_tokens == 0  # the usage chunk never came


async def test_errors_are_openai_errors(served, served_with_key):
    with pytest.raises(openai.NotFoundError):
        await ModelClient(served.base_url).chat("no-such-model", MESSAGES, GREEDY)
    with pytest.raises(openai.AuthenticationError):
        await ModelClient(served_with_key.base_url, api_key="wrong").chat(SERVED_NAME, MESSAGES, GREEDY)
    keyed = await ModelClient(served_with_key.base_url, api_key=API_KEY).chat(SERVED_NAME, MESSAGES, GREEDY)
    assert keyed.completion_tokens == 12
    dead = ModelClient(f"http://127.0.0.1:{free_port()}")
    assert not await dead.ready()
    with pytest.raises(openai.APIConnectionError):
        await dead.stream_chat(SERVED_NAME, MESSAGES, GREEDY)


async def test_chat_page_structured_output_settings_reach_the_grammar(served):
    """The Chat page keeps response_format among its params; the server constrains decoding with it, so even
    random weights answer with JSON that validates against the schema."""
    schema = {"type": "object", "additionalProperties": False, "required": ["n", "ok", "城市"],
              "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}, "ok": {"type": "boolean"},
                             "城市": {"enum": ["北京", "上海"]}}}
    params = clean_params({**GREEDY, "max_tokens": 64, "response_format": schema_response_format(json.dumps(schema))})
    client = ModelClient(served.base_url)
    for answer in (await client.stream_chat(SERVED_NAME, MESSAGES, params),
                   await client.chat(SERVED_NAME, MESSAGES, params)):
        assert answer.finish_reason == "stop", answer
        jsonschema.validate(json.loads(answer.text), schema)
    with pytest.raises(ValueError, match="not a valid JSON Schema at properties/n/type"):
        schema_response_format('{"properties": {"n": {"type": 5}}}')
