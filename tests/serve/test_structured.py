"""Structured output over the OpenAI API, with the bundled model behind a real server and the real `openai` client:
response_format (json_schema, json_object, a Pydantic model through `.parse`), forced tool calls, vLLM's extras,
and a schema the grammar library cannot take."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.serve.conftest import SERVED_NAME, start_server

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                                        "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two integers",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]}}},
]
QUESTIONS = ["What is the weather in Paris?", "Add 2 and 3.", "Is it raining in Tokyo?", "What is 10 plus 32?",
             "北京天气怎么样？", "Sum 7 and 8 for me.", "Weather in Oslo in fahrenheit?", "How hot is Cairo?",
             "Compute 100 + 250.", "上海会下雨吗？", "Tell me the weather in Rome.", "What is 1+1?",
             "Temperature in Lima please.", "Add 4 and 40.", "Is it cold in Moscow?", "What's 12 plus 30?",
             "Weather for Berlin.", "Add minus 5 and 9.", "Should I take an umbrella in London?", "3 + 4 = ?"]


class City(BaseModel):
    name: str = Field(max_length=16)
    country: str = Field(max_length=16)
    population: int = Field(ge=0, le=100_000_000)
    landmarks: list[str] = Field(max_length=3)


@pytest.fixture(scope="module")
def served_bundled(bundled_model_dir):
    # Eager decode: these tests are about the grammar, not about waiting for compiled CPU graphs.
    thread, served = start_server(bundled_model_dir, max_model_len=1024, num_kv_blocks=512, enforce_eager=True)
    yield served
    thread.stop()


@pytest.fixture
def client(served_bundled):
    return openai.OpenAI(base_url=served_bundled.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def ask(client, content: str, **kwargs):
    return client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": content}],
                                          temperature=0, max_tokens=kwargs.pop("max_tokens", 120), **kwargs)


def test_parse_with_a_pydantic_model(client):
    completion = client.chat.completions.parse(
        model=SERVED_NAME, messages=[{"role": "user", "content": "Tell me about Paris."}], response_format=City,
        temperature=0, max_tokens=120)
    city = completion.choices[0].message.parsed
    assert isinstance(city, City) and completion.choices[0].finish_reason == "stop"


def test_json_schema_streamed_and_json_object(client):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                               "why": {"type": "string", "maxLength": 30}},
              "required": ["answer", "why"], "additionalProperties": False}
    stream = ask(client, "Is the sea salty?", stream=True,
                 response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema,
                                                                         "strict": True}})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    jsonschema.validate(json.loads(text), schema)
    reply = ask(client, "Give me a JSON object about cats.", response_format={"type": "json_object"},
                max_tokens=60)
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    else:  # a JSON object may be cut by max_tokens; what there is must be the start of one
        assert reply.choices[0].message.content.startswith("{")


@pytest.mark.slow  # 20 requests of the bundled model, batched: minutes on 2 busy cores
def test_tool_choice_required_gives_valid_calls_for_twenty_prompts(client):
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:  # concurrent, so the engine batches them
        replies = list(pool.map(lambda q: ask(client, q, tools=TOOLS, tool_choice="required"), QUESTIONS))
    for question, reply in zip(QUESTIONS, replies, strict=True):
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", (question, choice)
        for call in choice.message.tool_calls:
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_named_tool_choice_gives_exactly_one_call_to_it(client):
    reply = ask(client, "What is the weather in Paris?", tools=TOOLS,
                tool_choice={"type": "function", "function": {"name": "add"}})
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "add"
    jsonschema.validate(json.loads(call.function.arguments), TOOLS[1]["function"]["parameters"])


def test_vllm_extras_on_chat_and_completions(client):
    choice = ask(client, "Is the sky blue?", extra_body={"guided_choice": ["yes", "no"]})
    assert choice.choices[0].message.content in ("yes", "no")
    regex = client.completions.create(model=SERVED_NAME, prompt="A product code:", max_tokens=12, temperature=0,
                                      extra_body={"guided_regex": r"[A-Z]{3}-\d{4}"})
    assert re.fullmatch(r"[A-Z]{3}-\d{4}", regex.choices[0].text)
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["n"]}
    guided = client.completions.create(model=SERVED_NAME, prompt="A digit as JSON:", max_tokens=20, temperature=0,
                                       extra_body={"structured_outputs": {"json": schema}})
    jsonschema.validate(json.loads(guided.choices[0].text), schema)
    grammar = ask(client, "Say hello.", extra_body={"guided_grammar": 'root ::= "hello" (" " "world")?'})
    assert grammar.choices[0].message.content in ("hello", "hello world")


def test_unsupported_schema_is_a_400_that_names_it(client):
    bad = {"type": "object", "properties": {"a": {"type": "strin"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "x", response_format={"type": "json_schema", "json_schema": {"name": "b", "schema": bad}})
    error = caught.value.body
    assert error["param"] == "response_format" and "strin" in error["message"]
    remote = {"type": "object", "properties": {"a": {"$ref": "https://x.test/a.json"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "x", response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": remote}})
    error = caught.value.body
    assert error["param"] == "response_format" and "properties.a points outside the schema" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "x", extra_body={"guided_regex": "(unclosed"})
    assert caught.value.body["param"] == "guided_regex"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "x", extra_body={"guided_regex": "a", "guided_choice": ["a"]})
    assert "only one output constraint" in caught.value.body["message"]
