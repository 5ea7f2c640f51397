"""The engine's CUDA attention path (Triton kernels fed by our metadata) end to end, on CPU.

Without a GPU the kernels run under TRITON_INTERPRET=1, so this checks what the GPU run relies on: the
metadata the runner builds for mixed decode + chunked-prefill + prefix-hit batches means to the kernels what it
means to the torch ops. CUDA graphs and torch.compile stay GPU-only.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from engine.infer import EngineConfig, LLMEngine, SamplingParams  # noqa: E402


def test_triton_attention_gives_the_same_greedy_tokens(tiny_model_dir):
    path = str(tiny_model_dir("mistral"))
    config = EngineConfig(device="cpu", dtype="float32", num_kv_blocks=48, block_size=4, max_num_batched_tokens=9,
                          max_model_len=128)
    reference = LLMEngine(path, config)
    triton_engine = LLMEngine(path, config)
    for layer in triton_engine.runner.model.attention_layers():
        layer.use_triton_kernels()
    tok = reference.tokenizer
    shared = tok.encode("A shared opening line for both prompts")
    prompts = [shared + tok.encode(" then one way"), tok.encode("Short"), shared + tok.encode(" or another")]
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    expected = reference.generate(prompts, params)
    got = triton_engine.generate(prompts, params)
    assert [r.token_ids for r in got] == [r.token_ids for r in expected]
    assert got[2].num_cached_tokens > 0
