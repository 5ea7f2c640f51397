"""Tool calls and JSON mode end to end, on a "scripted" tiny llama whose greedy output is known in advance.

A random model never writes a tool call. This one is rigged so it must: attention and MLP outputs are zeroed,
so the next token depends on the current token only, and embeddings / output rows are set so that from the
last prompt token greedy decoding walks a chosen chain of tokens and then EOS. It is a real model folder run
by the real engine and server; only its weights are hand-made.
"""

from __future__ import annotations

import itertools
import json

import pytest

from engine.serve.chat import plan_chat
from engine.serve.protocol import ChatCompletionRequest
from tests.serve.conftest import SERVED_NAME, start_server

MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ARGUMENTS = '{"city": "Paris"}'


def write_scripted_model(source, out, transitions: dict[int, int]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        for dim, (current, following) in enumerate(transitions.items()):
            embed[current] = 0.0
            embed[current, dim] = 1.0
            head[following, dim] = 100.0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)


@pytest.fixture(scope="module")
def scripted(tiny_model_dir, tmp_path_factory):
    source = tiny_model_dir("llama")  # untied embeddings, so the output rows can be set apart
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    eos = tokenizer.eos_token_id

    def last_prompt_token(**request) -> int:
        req = ChatCompletionRequest(model=SERVED_NAME, messages=MESSAGES, **request)
        return plan_chat(req, tokenizer).prompt_ids[-1]

    # Forced call: the prompt ends inside `"arguments": `; the model writes the arguments and `}` then stops.
    call_chain = [last_prompt_token(tools=[WEATHER_TOOL], tool_choice=NAMED),
                  *tokenizer.encode(ARGUMENTS + "}"), eos]
    # JSON mode: the prompt ends with the forced "{"; the model closes the object.
    json_chain = [last_prompt_token(response_format={"type": "json_object"}), *tokenizer.encode("}"), eos]
    transitions = {}
    for chain in (call_chain, json_chain):
        for current, following in itertools.pairwise(chain):
            assert transitions.setdefault(current, following) == following, "the chains must not share a token"
    out = tmp_path_factory.mktemp("scripted-llama")
    write_scripted_model(source, out, transitions)
    thread, served = start_server(out)
    yield served
    thread.stop()


@pytest.fixture
def scripted_client(scripted):
    from openai import OpenAI

    return OpenAI(base_url=scripted.base_url + "/v1", api_key="x", max_retries=0, timeout=60)


def test_named_tool_choice_returns_a_parsed_call(scripted_client):
    reply = scripted_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_tool_call_deltas(scripted_client):
    chunks = list(scripted_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, temperature=0,
        stream=True))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1 and deltas[0].index == 0 and deltas[0].id
    assert deltas[0].function.name == "get_weather"
    assert json.loads(deltas[0].function.arguments) == {"city": "Paris"}
    assert all(not c.choices[0].delta.content for c in chunks)  # the tags never leak as content
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_call_with_the_sdk_stream_helper(scripted_client):
    with scripted_client.chat.completions.stream(
            model=SERVED_NAME, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice=NAMED, temperature=0) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


def test_json_mode_valid_object(scripted_client):
    reply = scripted_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, response_format={"type": "json_object"}, temperature=0)
    assert reply.choices[0].message.content == "{}" and reply.choices[0].finish_reason == "stop"
