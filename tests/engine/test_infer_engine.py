"""The engine's request-level features on a tiny random llama: seeds, stops, logprobs, n, abort, errors."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from engine.infer import EngineConfig, LLMEngine, SamplingParams

PROMPT = "Once upon a time there was a small robot that"


@pytest.fixture(scope="module")
def llama_dir(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.fixture(scope="module")
def engine(llama_dir):
    return LLMEngine(str(llama_dir), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=256, max_model_len=512))


@pytest.fixture(scope="module")
def hf_model(llama_dir):
    return AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32).eval()


def run(engine: LLMEngine, prompt, params: SamplingParams) -> list:
    """All outputs of one request, streamed through step()."""
    rid = engine.add_request(prompt, params)
    outputs = []
    while engine.has_unfinished_requests():
        outputs.extend(o for o in engine.step() if o.request_id == rid)
    return outputs


def test_same_seed_same_text_and_n_samples_differ(engine):
    params = SamplingParams(temperature=1.0, top_p=0.95, seed=7, max_tokens=16, n=3)
    first = engine.generate([PROMPT], params)
    # A different batch around it must not change a seeded request.
    second = engine.generate([PROMPT, "Another prompt entirely"], [params, SamplingParams(max_tokens=16)])
    assert [r.token_ids for r in first] == [r.token_ids for r in second[:3]]
    assert len({tuple(r.token_ids) for r in first}) == 3


def test_n_samples_share_the_prompt_through_the_prefix_cache(engine):
    prompt = engine.tokenizer.encode("shared prompt tokens " * 12)
    results = engine.generate([prompt], SamplingParams(temperature=1.0, max_tokens=4, n=3))
    assert results[0].num_cached_tokens == 0
    full_blocks = (len(prompt) - 1) // 16 * 16
    assert [r.num_cached_tokens for r in results[1:]] == [full_blocks, full_blocks]


def test_stop_token_ids_and_max_tokens(engine):
    [greedy] = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=12))
    assert greedy.finish_reason == "length" and len(greedy.token_ids) == 12
    stop_at = greedy.token_ids[5]
    first = greedy.token_ids.index(stop_at)
    [stopped] = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop_at]))
    assert stopped.finish_reason == "stop" and stopped.token_ids == greedy.token_ids[:first + 1]


def test_stop_strings_are_cut_and_never_streamed(engine):
    [greedy] = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=24))
    text = greedy.text
    stop = text[len(text) // 2:len(text) // 2 + 4]
    assert stop.strip(), text
    outputs = run(engine, PROMPT, SamplingParams(temperature=0, max_tokens=24, stop=[stop]))
    streamed = "".join(o.new_text for o in outputs)
    assert streamed == text[:text.index(stop)]
    assert outputs[-1].finished and outputs[-1].finish_reason == "stop"
    assert all(stop not in o.new_text for o in outputs)


def test_logprobs_match_hf_log_softmax(engine, hf_model):
    prompt = engine.tokenizer.encode(PROMPT)
    outputs = run(engine, prompt, SamplingParams(temperature=0, max_tokens=6, logprobs=3))
    entries = [e for o in outputs for e in o.logprobs]
    tokens = [t for o in outputs for t in o.new_token_ids]
    assert [e.token_id for e in entries] == tokens
    with torch.no_grad():
        hf = hf_model(torch.tensor([prompt + tokens])).logits[0].log_softmax(-1)
    for i, entry in enumerate(entries):
        row = hf[len(prompt) - 1 + i]
        assert math.isclose(entry.logprob, row[entry.token_id].item(), abs_tol=1e-4)
        assert [t for t, _ in entry.top] == row.topk(3).indices.tolist()
        # Greedy: the chosen token is the best alternative.
        assert entry.top[0][0] == entry.token_id


def test_prompt_logprobs_match_hf_teacher_forcing(engine, hf_model):
    prompt = engine.tokenizer.encode(PROMPT + " and then it walked home.")
    # A tiny token budget splits the prompt into chunks: the logprobs must join up across them.
    chunked = LLMEngine(str(engine.runner.model_path), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=64,
                                                                    max_num_batched_tokens=5))
    for eng in (engine, chunked):
        outputs = run(eng, prompt, SamplingParams(temperature=0, max_tokens=2, prompt_logprobs=2))
        entries = outputs[0].prompt_logprobs
        assert len(entries) == len(prompt) and entries[0] is None
        assert all(o.prompt_logprobs is None for o in outputs[1:])
        with torch.no_grad():
            hf = hf_model(torch.tensor([prompt])).logits[0].log_softmax(-1)
        for i in range(1, len(prompt)):
            assert entries[i].token_id == prompt[i]
            assert math.isclose(entries[i].logprob, hf[i - 1, prompt[i]].item(), abs_tol=1e-4)
            assert [t for t, _ in entries[i].top] == hf[i - 1].topk(2).indices.tolist()


def test_abort_frees_blocks_and_reports_abort(engine):
    rid = engine.add_request(PROMPT, SamplingParams(temperature=0, max_tokens=50))
    engine.step()
    engine.step()
    assert engine.stats()["kv_blocks_used"] > 0
    engine.abort_request(rid)
    outputs = engine.step()
    assert [(o.request_id, o.finished, o.finish_reason) for o in outputs] == [(rid, True, "abort")]
    assert engine.stats()["kv_blocks_used"] == 0 and not engine.has_unfinished_requests()
    waiting = engine.add_request(PROMPT, SamplingParams(max_tokens=5))
    engine.abort_request(waiting)  # before it ever ran
    assert [o.finish_reason for o in engine.step()] == ["abort"]
    engine.abort_request("no-such-request")


def test_nan_logits_finish_that_request_with_an_error(llama_dir, tmp_path, engine):
    broken = tmp_path / "nan-model"
    shutil.copytree(llama_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    poison = engine.tokenizer.encode(" robot")[-1]
    weights["model.embed_tokens.weight"][poison] = float("nan")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    nan_engine = LLMEngine(str(broken), EngineConfig(device="cpu", dtype="float32", num_kv_blocks=64))
    good_prompt = "A sentence without the poisoned word"
    assert poison not in nan_engine.tokenizer.encode(good_prompt)
    bad, good = nan_engine.generate([PROMPT, good_prompt], SamplingParams(temperature=0, max_tokens=8))
    assert bad.finish_reason == "error" and bad.token_ids == []
    assert good.finish_reason == "length" and len(good.token_ids) == 8
    [again] = engine.generate([good_prompt], SamplingParams(temperature=0, max_tokens=8))
    assert again.token_ids == good.token_ids
    outputs = run(nan_engine, PROMPT, SamplingParams(max_tokens=8))
    assert outputs[-1].error == "non-finite logits"


def test_stats_count_tokens(engine):
    before = engine.stats()
    engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=5))
    after = engine.stats()
    assert after["generation_tokens"] - before["generation_tokens"] == 5
    assert after["requests_finished"] - before["requests_finished"] == 1
    assert after["prompt_tokens"] - before["prompt_tokens"] == len(engine.tokenizer.encode(PROMPT))
    assert after["running"] == after["waiting"] == 0
