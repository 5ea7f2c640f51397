"""The compiled CPU decode path (engine/infer/cpu_graphs.py) gives the same greedy tokens as HF in fp32.

Tiny random llama-family models keep the compiles short; inductor's cache lives under .data/, so a rerun loads
the compiled graphs instead of building them again. A batch of six prompts decodes in bucket 16 (ten padding
rows that must neither write the cache nor disturb the real rows), a single prompt in bucket 1, and prefill
and mixed steps stay eager in between.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.infer import EngineConfig, LLMEngine, SamplingParams
from tests.engine.test_infer_parity import GREEDY, assert_matches_hf, mixed_prompts

CACHE = Path(__file__).resolve().parents[2] / ".data" / "inductor-cache"


def compiled_engine(path, **overrides) -> LLMEngine:
    config = dict(device="cpu", dtype="float32", num_kv_blocks=128, compile_cpu=True, compile_cache_dir=str(CACHE))
    config.update(overrides)
    return LLMEngine(str(path), EngineConfig(**config))


@pytest.fixture(scope="module")
def llama_engine(tiny_model_dir):
    engine = compiled_engine(tiny_model_dir("llama"))
    engine.runner.cpu_graphs.sizes = [1, 16]  # no bucket 4: nothing compiles in the background behind the tests
    engine.runner.cpu_graphs.warm_up()
    return engine


def test_batch_decodes_through_the_padded_bucket_and_matches_hf(llama_engine, tiny_model_dir):
    graphs = llama_engine.runner.cpu_graphs
    assert set(graphs.compiled) == {1, 16}
    calls = _count_calls(graphs)
    assert_matches_hf(llama_engine, tiny_model_dir("llama"), mixed_prompts(llama_engine.tokenizer, 6))
    assert calls[16] == GREEDY.max_tokens - 1  # every decode step ran compiled, none eagerly
    assert llama_engine.stats()["kv_blocks_used"] == 0


def test_single_sequence_and_prefix_cache_hits_match_hf(llama_engine, tiny_model_dir):
    calls = _count_calls(llama_engine.runner.cpu_graphs)
    prompt = llama_engine.tokenizer.encode("A shared system prompt, long enough to fill a block or two. " * 2)
    for _ in range(2):  # the second run prefills from cached blocks
        assert_matches_hf(llama_engine, tiny_model_dir("llama"), [prompt])
    assert calls[1] == 2 * (GREEDY.max_tokens - 1)


@pytest.mark.slow  # two more compiles: minutes on 2 cores the first time, ~20 s each from the cache
@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_other_archs_match_hf_compiled(tiny_model_dir, arch):
    """qkv bias and tied embeddings (qwen2), a single KV head (mistral); chunked prefill mixes eager steps in."""
    path = tiny_model_dir(arch)
    engine = compiled_engine(path, max_num_batched_tokens=24)
    engine.runner.cpu_graphs.sizes = [16]  # every decode step in the one compiled bucket
    engine.runner.cpu_graphs.warm_up()
    calls = _count_calls(engine.runner.cpu_graphs)
    assert_matches_hf(engine, path, mixed_prompts(engine.tokenizer, 6))
    assert calls[16] > 0


def test_a_bucket_compiles_in_the_background_while_steps_run_eagerly(tiny_model_dir):
    engine = compiled_engine(tiny_model_dir("llama"), max_num_seqs=2)
    graphs = engine.runner.cpu_graphs
    assert graphs.sizes == [1, 2]
    [first] = engine.generate([[1000, 1001, 1002]], SamplingParams(temperature=0, max_tokens=4))
    assert len(first.token_ids) == 4  # answered at once, eagerly; the compile goes on in its thread
    graphs.wait(timeout=600)
    assert 1 in graphs.compiled
    [again] = engine.generate([[1000, 1001, 1002]], SamplingParams(temperature=0, max_tokens=4))
    assert again.token_ids == first.token_ids


def test_dtype_auto_weight_kernels_run_compiled_as_they_run_eagerly(tiny_model_dir):
    """dtype auto picks a weight kernel for the CPU: fp16 weights (FBGEMM's op or ours) without native bf16, the
    bf16 streaming kernel with AVX512-BF16. Either op sits in the compiled graph, with the same tokens as eager."""
    path = tiny_model_dir("llama")
    engine = compiled_engine(path, dtype="auto")
    if not (engine.runner.fp16_weights or engine.runner.bf16_kernel):
        pytest.skip("this CPU has neither FBGEMM's fp16 GEMM nor AVX512-BF16: dtype auto uses the torch ops")
    engine.runner.cpu_graphs.sizes = [1]
    engine.runner.cpu_graphs.warm_up()
    eager = LLMEngine(str(path), EngineConfig(device="cpu", num_kv_blocks=128, enforce_eager=True))
    prompt = eager.tokenizer.encode("The capital of France is")
    [ours] = engine.generate([prompt], GREEDY)
    assert ours.token_ids == eager.generate([prompt], GREEDY)[0].token_ids


def test_enforce_eager_and_the_default_compile_nothing(tiny_model_dir):
    path = tiny_model_dir("llama")
    assert compiled_engine(path, enforce_eager=True).runner.cpu_graphs is None
    assert LLMEngine(str(path), EngineConfig(device="cpu", num_kv_blocks=16)).runner.cpu_graphs is None


def _count_calls(graphs) -> dict[int, int]:
    """Wrap each compiled graph so the test sees how many decode steps went through it."""
    calls = dict.fromkeys(graphs.compiled, 0)
    for bucket, fn in list(graphs.compiled.items()):
        def counted(buf, _fn=fn, _bucket=bucket):
            calls[_bucket] += 1
            return _fn(buf)

        graphs.compiled[bucket] = counted
    return calls
