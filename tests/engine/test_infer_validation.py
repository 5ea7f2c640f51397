"""Bad input is refused with a message that names the field."""

from __future__ import annotations

import json
import shutil

import pytest

from engine.infer import EngineConfig, LLMEngine, SamplingParams


@pytest.mark.parametrize("kwargs,field", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=0), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(min_p=2), "min_p"),
    (dict(repetition_penalty=0), "repetition_penalty"),
    (dict(frequency_penalty=3), "frequency_penalty"),
    (dict(presence_penalty=-2.5), "presence_penalty"),
    (dict(max_tokens=0), "max_tokens"),
    (dict(n=0), "n"),
    (dict(seed="x"), "seed"),
    (dict(logprobs=-1), "logprobs"),
    (dict(prompt_logprobs=99), "prompt_logprobs"),
    (dict(stop=["ok", ""]), "stop"),
    (dict(stop="END"), "stop"),
    (dict(stop_token_ids=[-3]), "stop_token_ids"),
])
def test_sampling_params_name_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        SamplingParams(**kwargs).validate()


def test_default_sampling_params_are_valid():
    SamplingParams().validate()
    SamplingParams(temperature=0, top_k=1, logprobs=0, seed=0, stop=["\n"], stop_token_ids=[2]).validate()


@pytest.mark.parametrize("kwargs,field", [
    (dict(max_num_seqs=0), "max_num_seqs"),
    (dict(block_size=0), "block_size"),
    (dict(max_model_len=-5), "max_model_len"),
    (dict(num_kv_blocks=0), "num_kv_blocks"),
    (dict(gpu_memory_utilization=1.5), "gpu_memory_utilization"),
    (dict(cpu_kv_cache_gb=0), "cpu_kv_cache_gb"),
    (dict(device="tpu"), "device"),
    (dict(dtype="fp8"), "dtype"),
])
def test_engine_config_names_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        EngineConfig(**kwargs).validate()


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return LLMEngine(str(tiny_model_dir("qwen2")), EngineConfig(device="cpu", num_kv_blocks=8, block_size=16))


def test_add_request_checks_prompt_and_max_tokens(engine):
    assert engine.max_model_len == 128  # capped by the 8 blocks of KV
    with pytest.raises(ValueError, match="^prompt: must not be empty"):
        engine.add_request("", SamplingParams())
    with pytest.raises(ValueError, match="^prompt: token ids"):
        engine.add_request([1, 10**9], SamplingParams())
    with pytest.raises(ValueError, match="^prompt: 200 tokens"):
        engine.add_request([5] * 200, SamplingParams(max_tokens=1))
    with pytest.raises(ValueError, match="^max_tokens: prompt"):
        engine.add_request([5] * 100, SamplingParams(max_tokens=50))
    with pytest.raises(ValueError, match="^top_p: "):
        engine.add_request("hi", SamplingParams(top_p=2))
    engine.add_request("hi", SamplingParams(max_tokens=2), request_id="dup")
    with pytest.raises(ValueError, match="^request_id: "):
        engine.add_request("hi", SamplingParams(max_tokens=2), request_id="dup")
    engine.abort_request("dup")
    engine.step()
    assert not engine.has_unfinished_requests()


def test_a_request_filling_max_model_len_stops_with_length(engine):
    [result] = engine.generate([[5] * 120], SamplingParams(temperature=0, max_tokens=8))
    assert result.finish_reason == "length" and len(result.token_ids) == 8


def test_engine_refuses_what_it_cannot_serve(tiny_model_dir, tmp_path):
    path = tiny_model_dir("llama")
    with pytest.raises(ValueError, match="^max_model_len: 5000 exceeds"):
        LLMEngine(str(path), EngineConfig(device="cpu", max_model_len=5000))
    with pytest.raises(ValueError, match="^max_model_len: 1024 tokens, but only 64"):
        LLMEngine(str(path), EngineConfig(device="cpu", max_model_len=1024, num_kv_blocks=4))
    other = tmp_path / "gpt2ish"
    shutil.copytree(path, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "rope_parameters": {"rope_type": "yarn",
                                                   "factor": 4.0, "rope_theta": 10000.0,
                                                   "original_max_position_embeddings": 512}}))
    with pytest.raises(ValueError, match="^rope_scaling: rope_type 'yarn' is not supported"):
        LLMEngine(str(other), EngineConfig(device="cpu", num_kv_blocks=4))
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        LLMEngine(str(other), EngineConfig(device="cpu", num_kv_blocks=4))


def test_generate_with_one_bad_prompt_queues_nothing(engine):
    with pytest.raises(ValueError, match="^prompt: must not be empty"):
        engine.generate(["fine", ""], SamplingParams(max_tokens=2))
    assert not engine.has_unfinished_requests() and engine.stats()["kv_blocks_used"] == 0
