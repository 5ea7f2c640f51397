"""/v1/chat/completions through the real openai client against a real server on loopback (tiny llama)."""

from __future__ import annotations

import json

import pytest

from engine.serve.chat import ChoiceState, final_reason
from engine.serve.chat_template import build_chat_prompt
from engine.serve.protocol import ChatMessage, Tool
from tests.serve.conftest import SERVED_NAME, tiny_engine

MESSAGES = [{"role": "user", "content": "Write a haiku about the sea."}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def chat(client, **kwargs):
    kwargs.setdefault("messages", MESSAGES)
    return client.chat.completions.create(model=SERVED_NAME, **kwargs)


def test_models_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [SERVED_NAME]


def test_greedy_matches_offline_generate(client, served):
    from engine.infer import SamplingParams

    reply = chat(client, temperature=0, max_tokens=16)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    ids = served.tokenizer.encode(build_chat_prompt(served.tokenizer, [ChatMessage(**MESSAGES[0])]),
                                  add_special_tokens=False)
    offline = tiny_engine(served.model_dir).generate([ids], SamplingParams(temperature=0, max_tokens=16))[0]
    assert choice.message.content == offline.text
    assert reply.usage.prompt_tokens == len(ids)
    assert reply.usage.completion_tokens == len(offline.token_ids)
    assert reply.usage.total_tokens == len(ids) + len(offline.token_ids)


def test_stream_reassembles_to_the_same_answer(client):
    whole = chat(client, temperature=0, max_tokens=12).choices[0]
    chunks = list(chat(client, temperature=0, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    # The same prompt again: its full blocks come from the prefix cache.
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= 16


def test_n2_with_seed_repeats_and_differs(client):
    first = chat(client, n=2, seed=7, temperature=1.0, max_tokens=10)
    again = chat(client, n=2, seed=7, temperature=1.0, max_tokens=10)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1]
    assert texts == [c.message.content for c in again.choices]
    assert texts[0] != texts[1]
    assert first.usage.completion_tokens == 20


def test_n2_stream_keeps_choices_apart(client):
    whole = chat(client, n=2, seed=3, max_tokens=8)
    texts = ["", ""]
    for chunk in chat(client, n=2, seed=3, max_tokens=8, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in whole.choices]


def test_stop_string_cuts_the_answer(client):
    greedy = dict(temperature=0, max_tokens=16, extra_body={"ignore_eos": True})
    text = chat(client, **greedy).choices[0].message.content
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = chat(client, **greedy, stop=[stop, "never-there"]).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == text[: text.index(stop)]
    assert chat(client, **greedy, stop=stop).choices[0].message.content == cut.message.content


def test_logprobs_and_top_logprobs(client):
    choice = chat(client, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3).choices[0]
    entries = choice.logprobs.content
    assert len(entries) == 6 and "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-5)
        assert bytes(entry.bytes).decode() == entry.token


def test_extra_vllm_params_are_accepted(client):
    reply = chat(client, max_tokens=4, seed=1, extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2},
                 frequency_penalty=0.5, presence_penalty=0.5, top_p=0.9, max_completion_tokens=4)
    assert reply.usage.completion_tokens == 4


def test_tools_reach_the_prompt(client, served):
    tools = [WEATHER_TOOL]
    plain = chat(client, max_tokens=1)
    with_tools = chat(client, max_tokens=1, tools=tools)
    prompt = build_chat_prompt(served.tokenizer, [ChatMessage(**MESSAGES[0])], [Tool(**WEATHER_TOOL)])
    assert '"name": "get_weather"' in prompt and "<tool_call>" in prompt
    assert with_tools.usage.prompt_tokens == len(served.tokenizer.encode(prompt, add_special_tokens=False))
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens
    assert chat(client, max_tokens=1, tools=tools, tool_choice="none").usage.prompt_tokens \
        == plain.usage.prompt_tokens


def test_forced_tool_choice_streams_like_the_plain_answer(client):
    # max_tokens cuts the (grammar-forced) call short: the unfinished text comes back as content, the same way
    # in both response kinds.
    required = chat(client, max_tokens=4, temperature=0, tools=[WEATHER_TOOL], tool_choice="required")
    streamed = chat(client, max_tokens=4, temperature=0, tools=[WEATHER_TOOL], tool_choice="required", stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == required.choices[0].message.content and text.startswith("<tool")
    assert required.choices[0].finish_reason == "length"


def test_final_reason_rules():
    assert final_reason(ChoiceState(finish_reason="stop"), False) == "stop"
    assert final_reason(ChoiceState(finish_reason="length"), True) == "length"
    assert final_reason(ChoiceState(finish_reason="stop"), True) == "tool_calls"


def test_raw_sse_wire_format(served):
    import httpx

    body = {"model": SERVED_NAME, "messages": MESSAGES, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", served.base_url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        assert json.loads(event[len("data: "):])["object"] == "chat.completion.chunk"


def test_bundled_smollm2_answers_sensibly(bundled_model_dir):
    from openai import OpenAI

    from tests.serve.conftest import start_server

    thread, served = start_server(bundled_model_dir, num_kv_blocks=64)
    try:
        client = OpenAI(base_url=served.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
        reply = chat(client, messages=[{"role": "user", "content": "What is the capital of France?"}],
                     temperature=0, max_tokens=24)
    finally:
        thread.stop()
    assert "Paris" in reply.choices[0].message.content
