"""Tool calls and JSON mode end to end on a tiny random llama: the grammar makes even random weights answer with a
valid call or object, so the parsing, streaming and SDK helpers are tested on real engine output."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.serve.conftest import SERVED_NAME

MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
ARGUMENTS_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
                    "required": ["city"], "additionalProperties": False}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city", "parameters": ARGUMENTS_SCHEMA}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture
def tiny_client(served):
    from openai import OpenAI

    return OpenAI(base_url=served.base_url + "/v1", api_key="x", max_retries=0, timeout=120)


def test_named_tool_choice_returns_a_parsed_call(tiny_client):
    reply = tiny_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, temperature=0, max_tokens=64)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), ARGUMENTS_SCHEMA)


def test_streamed_tool_call_deltas(tiny_client):
    chunks = list(tiny_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, temperature=0,
        max_tokens=64, stream=True))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1 and deltas[0].index == 0 and deltas[0].id
    assert deltas[0].function.name == "get_weather"
    jsonschema.validate(json.loads(deltas[0].function.arguments), ARGUMENTS_SCHEMA)
    assert all(not c.choices[0].delta.content for c in chunks)  # the tags never leak as content
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_call_with_the_sdk_stream_helper(tiny_client):
    with tiny_client.chat.completions.stream(
            model=SERVED_NAME, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, temperature=0,
            max_tokens=64) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), ARGUMENTS_SCHEMA)


def test_json_schema_mode_gives_a_valid_object(tiny_client):
    reply = tiny_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, temperature=0, max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": ARGUMENTS_SCHEMA,
                                                                "strict": True}})
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), ARGUMENTS_SCHEMA)
