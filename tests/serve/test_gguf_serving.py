"""A GGUF file served through llama.cpp behind our engine and server: the bundled SmolLM2 GGUF (Q4_1, as shipped).

Greedy output must be llama.cpp's own greedy output token for token (llama.cpp computes the logits, our sampler
picks); a second turn reuses the first turn's context; sampling, stops, n, abort and the refusals go through the
same code as for our own runner; the real `openai` client talks to it over HTTP; a `serve` job started by a real
consumer serves an exported file by path.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from engine.infer import EngineConfig, LLMEngine, SamplingParams
from engine.models.bundled import bundled_gguf_path
from tests.serve.conftest import ServerThread

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def engine():
    return LLMEngine(str(bundled_gguf_path()), EngineConfig(device="cpu", max_model_len=1024))


def chat_ids(engine, messages) -> list[int]:
    return list(engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"])


def llama_cpp_greedy(engine, ids: list[int], n: int) -> list[int]:
    """llama.cpp's own greedy decode of ids, on the engine's context (started afresh)."""
    llm = engine.runner.llm
    out = []
    for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        out.append(token)
        if len(out) == n:
            break
    llm.reset()
    return out


def test_greedy_equals_llama_cpp_token_for_token(engine):
    ids = chat_ids(engine, CHAT)
    result = engine.generate([ids], SamplingParams(temperature=0, max_tokens=24, ignore_eos=True))[0]
    assert len(result.token_ids) == 24
    assert result.token_ids == llama_cpp_greedy(engine, ids, 24)
    assert result.text == engine.tokenizer.decode(result.token_ids)


def test_a_second_turn_reuses_the_first_turns_context(engine):
    first_ids = chat_ids(engine, CHAT)
    first = engine.generate([first_ids], SamplingParams(temperature=0, max_tokens=16))[0]
    follow = CHAT + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And of Italy?"}]
    second_ids = chat_ids(engine, follow)
    second = engine.generate([second_ids], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0]
    before = first_ids + first.token_ids
    shared = next((i for i, (a, b) in enumerate(zip(before, second_ids, strict=False)) if a != b), len(before))
    assert second.num_cached_tokens >= len(first_ids) and second.num_cached_tokens <= shared
    assert second.token_ids == llama_cpp_greedy(engine, second_ids, 12), "reuse must not change the answer"


def test_sampling_seed_n_and_stop_strings(engine):
    ids = chat_ids(engine, [{"role": "user", "content": "Write a short poem about the sea."}])
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=7, n=2, max_tokens=16, ignore_eos=True)
    a = engine.generate([ids], params)
    b = engine.generate([ids], params)
    assert [r.token_ids for r in a] == [r.token_ids for r in b], "same seed, same samples"
    assert a[0].token_ids != a[1].token_ids, "the n samples differ"
    greedy = engine.generate([ids], SamplingParams(temperature=0, max_tokens=24, ignore_eos=True))[0].text
    stop = greedy.strip()[3:6]
    cut = engine.generate([ids], SamplingParams(temperature=0, max_tokens=24, stop=[stop]))[0]
    assert cut.finish_reason == "stop" and stop not in cut.text and greedy.startswith(cut.text)


def test_refusals_name_the_field(engine):
    ids = chat_ids(engine, CHAT)
    with pytest.raises(ValueError, match="prompt_logprobs"):
        engine.add_request(ids, SamplingParams(prompt_logprobs=1))
    with pytest.raises(ValueError, match="max_tokens"):
        engine.add_request(ids, SamplingParams(max_tokens=5000))
    with pytest.raises(ValueError, match="max_model_len"):
        LLMEngine(str(bundled_gguf_path()), EngineConfig(device="cpu", max_model_len=10**6))


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ValueError, match="broken.gguf is not a GGUF file"):
        LLMEngine(str(bad), EngineConfig(device="cpu"))


def test_openai_client_over_http_with_queueing_and_abort():
    from engine.serve.app import create_app
    from engine.serve.core_client import EngineCoreClient

    path = str(bundled_gguf_path())
    server = ServerThread(create_app(EngineCoreClient(path, EngineConfig(device="cpu", max_model_len=1024)), path))
    base = f"http://127.0.0.1:{server.port}/v1"
    try:
        client = openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list().data] == [path]
        reply = client.chat.completions.create(model=path, messages=CHAT, max_tokens=8, temperature=0)
        assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
        pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=path, messages=CHAT, max_tokens=8, temperature=0, stream=True) if c.choices]
        assert "".join(pieces) == reply.choices[0].message.content

        async def three_at_once():
            async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0, timeout=120) as aclient:
                return await asyncio.gather(*(aclient.completions.create(
                    model=path, prompt=f"Count to {n}:", max_tokens=6, temperature=0) for n in (3, 4, 5)))

        replies = asyncio.run(three_at_once())  # one context: they queue and all finish
        assert all(r.usage.completion_tokens == 6 for r in replies)

        with pytest.raises(openai.BadRequestError, match="prompt_logprobs|logprobs"):
            client.completions.create(model=path, prompt="x", max_tokens=1, echo=True, logprobs=1)

        # A client that goes away mid-stream frees the context for the next request.
        with httpx.stream("POST", base + "/completions", json={"model": path, "prompt": "Once upon a time",
                                                              "max_tokens": 400, "stream": True}, timeout=60) as r:
            next(r.iter_lines())
        after = client.completions.create(model=path, prompt="Hello", max_tokens=4, temperature=0)
        assert after.usage.completion_tokens == 4
    finally:
        server.stop()
