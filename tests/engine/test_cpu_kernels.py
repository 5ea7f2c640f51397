"""The hand-written CPU kernels (engine/infer/cpu_kernels) against the torch ops they replace.

Decode attention is checked against the torch paged-attention op on the same cache (GQA, shuffled blocks,
padding rows, every cache dtype); the fp16-weight linear against fp32 matmul over the same fp16 weights, on
both of its paths (streaming for small batches, the weight converted for ATen's GEMM at prefill) and at shapes
that do not fill its 4-row and 8-lane steps; the bf16 linear against fp32 matmul over the same bf16 values
(its streaming tiles on AVX512-BF16, ATen past them or without it); the sampler's row argmax and finiteness
check against torch's, ties and -inf included; the one-pass RMSNorm, rotary and SiLU-mul against the layers' torch ops.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.infer import EngineConfig, LLMEngine, SamplingParams, cpu_kernels
from engine.infer.layers import fp16_weights
from engine.infer.layers.activation import SiluAndMul, silu_and_mul
from engine.infer.layers.attention import cpu_paged_decode, paged_attention_decode, store_kvcache
from engine.infer.layers.norm import RMSNorm, add_rms_norm, rms_norm
from engine.infer.layers.rotary import RotaryEmbedding, apply_rotary

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="no C++ compiler: the torch ops stay in use")


def _paged_batch(dtype, seq_lens, heads=9, kv_heads=3, head_dim=64, block_size=16, layers=3, blocks=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cache = torch.randn(2, layers, blocks, block_size, kv_heads, head_dim, generator=gen).to(dtype)
    batch = len(seq_lens)
    width = max(1, max((n + block_size - 1) // block_size for n in seq_lens))
    tables = torch.full((batch, width), -1, dtype=torch.int32)
    free = torch.randperm(blocks, generator=gen).tolist()
    for b, n in enumerate(seq_lens):
        for i in range((n + block_size - 1) // block_size):
            tables[b, i] = free.pop()
    slots = torch.tensor([int(tables[b, (n - 1) // block_size]) * block_size + (n - 1) % block_size if n else -1
                          for b, n in enumerate(seq_lens)])
    q = torch.randn(batch, heads, head_dim, generator=gen).to(dtype)
    k = torch.randn(batch, kv_heads, head_dim, generator=gen).to(dtype)
    v = torch.randn(batch, kv_heads, head_dim, generator=gen).to(dtype)
    return cache, q, k, v, slots, torch.tensor(seq_lens, dtype=torch.int32), tables


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_paged_decode_stores_and_attends_like_the_torch_ops(dtype, tol):
    seq_lens = [1, 37, 16, 100]
    cache, q, k, v, slots, lens, tables = _paged_batch(dtype, seq_lens)
    expected_cache = cache.clone()
    out = cpu_kernels.paged_decode(q, k, v, cache, 1, slots, lens, tables, 0.125)
    store_kvcache(k, v, expected_cache[0, 1], expected_cache[1, 1], slots)
    assert torch.equal(cache, expected_cache)  # this step's K/V landed in their slots of layer 1, nothing else
    expected = paged_attention_decode(q, expected_cache[0, 1], expected_cache[1, 1], lens, tables, 0.125)
    assert out.dtype == dtype and out.shape == q.shape
    assert (out.float() - expected.float()).abs().max() < tol


@pytest.mark.parametrize("seq_lens,threads", [([300], 2), ([700], 4), ([0, 500], 4), ([100], 4)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
def test_a_context_split_among_threads_is_put_back_together_exactly(seq_lens, threads, dtype, tol):
    """Fewer sequences than threads: each sequence's context is cut into pieces whose softmax parts are merged."""
    cache, q, k, v, slots, lens, tables = _paged_batch(dtype, seq_lens, blocks=64)  # up to 44 blocks for one sequence
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = cpu_kernels.paged_decode(q, k, v, cache, 0, slots, lens, tables, 0.125)
    finally:
        torch.set_num_threads(before)
    expected = paged_attention_decode(q, cache[0, 0], cache[1, 0], lens.clamp(min=1), tables.clamp(min=0), 0.125)
    for row, n in enumerate(seq_lens):
        if n:
            assert (out[row].float() - expected[row].float()).abs().max() < tol
        else:
            assert torch.count_nonzero(out[row]) == 0


@pytest.mark.parametrize("heads,kv_heads,head_dim", [(9, 3, 64), (6, 2, 80), (2, 2, 128), (4, 1, 24)])
@pytest.mark.parametrize("seq_lens", [[203], [3, 61, 130]])  # one sequence split among threads; whole rows
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_tiled_passes_agree_with_the_torch_ops_for_every_head_shape(heads, kv_heads, head_dim, seq_lens, dtype, tol):
    """Eight-token score tiles, a value pass over register chunks of 64 dims (80 = 64 + 16), tails of a tile
    and of a chunk (203, 61, 3 tokens), GQA groups of 1-4, against the torch ops. One sequence on two threads is
    split by kv head (tiled scores); a batch reads whole rows."""
    cache, q, k, v, slots, lens, tables = _paged_batch(dtype, seq_lens, heads, kv_heads, head_dim, blocks=64)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = cpu_kernels.paged_decode(q, k, v, cache, 0, slots, lens, tables, head_dim ** -0.5)
    finally:
        torch.set_num_threads(before)
    expected = paged_attention_decode(q, cache[0, 0], cache[1, 0], lens, tables, head_dim ** -0.5)
    assert (out.float() - expected.float()).abs().max() < tol


def test_padding_rows_neither_store_nor_attend():
    cache, q, k, v, slots, lens, tables = _paged_batch(torch.float32, [20, 0, 5])
    before = cache.clone()
    out = cpu_kernels.paged_decode(q, k, v, cache, 0, slots, lens, tables, 0.125)
    assert torch.count_nonzero(out[1]) == 0
    changed = (cache != before).any(-1).any(-1).nonzero().tolist()  # (k or v, layer, block, offset)
    stored = {(int(s) // 16, int(s) % 16) for s in slots if s >= 0}
    assert {(kv, layer) for kv, layer, _, _ in changed} <= {(0, 0), (1, 0)}
    assert {(block, offset) for _, _, block, offset in changed} <= stored


def test_an_empty_slot_mapping_attends_over_what_is_already_cached():
    cache, q, k, v, slots, lens, tables = _paged_batch(torch.float32, [9, 33])
    before = cache.clone()
    out = cpu_kernels.paged_decode(q, k, v, cache, 2, torch.empty(0, dtype=torch.long), lens, tables, 0.1)
    assert torch.equal(cache, before)
    expected = paged_attention_decode(q, cache[0, 2], cache[1, 2], lens, tables, 0.1)
    assert (out - expected).abs().max() < 1e-5


def test_paged_decode_rejects_a_cache_of_the_wrong_shape():
    cache, q, k, v, slots, lens, tables = _paged_batch(torch.float32, [4])
    with pytest.raises(RuntimeError, match="kv_cache"):
        cpu_kernels.paged_decode(q, k, v, cache[0], 0, slots, lens, tables, 0.1)


def _linear(x, weight, bias):
    return cpu_kernels.linear_f16w(x, cpu_kernels.pack_f16w(weight), bias, weight.shape[0])


@pytest.mark.parametrize("m", [1, 2, 3, 5, 16, 80, 81, 200])
@pytest.mark.parametrize("n,k", [(96, 64), (131, 77), (600, 1536), (3, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fp16_weight_linear_matches_fp32_matmul(m, n, k, with_bias):
    gen = torch.Generator().manual_seed(m * n + k)
    weight = (torch.randn(n, k, generator=gen) * 0.05).half()
    bias = torch.randn(n, generator=gen) if with_bias else None
    x = torch.randn(m, k, generator=gen)
    expected = torch.nn.functional.linear(x, weight.float(), bias)
    out = _linear(x, weight, bias)
    assert out.dtype == torch.float32 and out.shape == (m, n)
    assert (out - expected).abs().max() < 1e-4


def test_a_weight_over_one_conversion_block_is_multiplied_block_by_block():
    """Prefill converts at most 16 MiB of fp32 weight per GEMM: 1100 x 4096 takes two blocks, the second partial."""
    gen = torch.Generator().manual_seed(7)
    weight = (torch.randn(1100, 4096, generator=gen) * 0.02).half()
    bias = torch.randn(1100, generator=gen)
    x = torch.randn(81, 4096, generator=gen)
    expected = torch.nn.functional.linear(x, weight.float(), bias)
    assert (_linear(x, weight, bias) - expected).abs().max() < 1e-3


@pytest.mark.parametrize("m", [1, 300])
def test_fp16_weight_linear_runs_under_inference_mode(m):
    """The engine calls it under torch.inference_mode, where both paths write into an inference tensor."""
    weight, bias = torch.randn(300, 64).half(), torch.randn(300)
    x = torch.randn(m, 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # threads of the pool write the output too
    try:
        with torch.inference_mode():
            out = _linear(x, weight, bias)
    finally:
        torch.set_num_threads(threads)
    assert (out - torch.nn.functional.linear(x, weight.float(), bias)).abs().max() < 1e-4


def test_fp16_weight_linear_keeps_leading_dimensions_and_refuses_a_mismatch():
    weight = torch.randn(8, 16).half()
    x = torch.randn(2, 3, 16)
    assert _linear(x, weight, None).shape == (2, 3, 8)
    with pytest.raises(RuntimeError, match="16"):
        _linear(torch.randn(2, 15), weight, None)
    with pytest.raises(RuntimeError, match="groups"):  # more output features than the packed weight holds
        cpu_kernels.linear_f16w(x, cpu_kernels.pack_f16w(weight), None, 9)
    with pytest.raises(RuntimeError, match="pack_f16w"):  # a plain [out, in] weight
        cpu_kernels.linear_f16w(x, weight, None, 8)


def test_packing_puts_each_group_of_eight_rows_k_major():
    weight = torch.arange(10 * 3, dtype=torch.float32).view(10, 3)
    packed = cpu_kernels.pack_f16w(weight)
    assert packed.shape == (2, 3, 8) and packed.dtype == torch.float16
    assert torch.equal(packed[0, 1], weight[:8, 1].half())
    assert torch.equal(packed[1, 2, :2], weight[8:, 2].half()) and not packed[1, :, 2:].any()


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 9, 16, 17, 40])
@pytest.mark.parametrize("n,k", [(96, 64), (131, 77), (600, 1536), (3, 5), (7, 33)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bf16_linear_matches_fp32_matmul_over_the_same_values(m, n, k, with_bias):
    """Dot-product tiles of four weight rows and up to four rows of x, k in steps of 32; AMX tiles of 32 weight
    rows (k a multiple of 32, the rows past the last whole block left to the dot products) for 5-16 rows of x;
    shapes that fill none of them, and batches on both sides of the streaming limit. Products of bf16 values are
    exact in fp32, so the result is the fp32 sum rounded once to bf16."""
    gen = torch.Generator().manual_seed(m * n + k)
    weight = (torch.randn(n, k, generator=gen) * 0.05).bfloat16()
    bias = torch.randn(n, generator=gen).bfloat16() if with_bias else None
    x = torch.randn(m, k, generator=gen).bfloat16()
    expected = torch.nn.functional.linear(x.float(), weight.float(), None if bias is None else bias.float())
    out = cpu_kernels.linear_bf16(x, weight, bias)
    assert out.dtype == torch.bfloat16 and out.shape == (m, n)
    assert ((out.float() - expected).abs() <= expected.abs() / 128 + 1e-4).all()


def test_bf16_linear_streams_small_batches_itself_where_the_cpu_has_avx512_bf16():
    """Up to its streaming limit the kernel itself computes: with small integers every product and sum is exact,
    so each output must be the exact sum rounded to nearest even, bit for bit, as ATen rounds."""
    rows = cpu_kernels.linear_bf16_max_rows()
    if rows == 0:
        pytest.skip("no AVX512-BF16: linear_bf16 is ATen's linear")
    gen = torch.Generator().manual_seed(3)
    weight = torch.randint(-8, 8, (300, 128), generator=gen).bfloat16()  # small integers: every sum exact
    bias = torch.randint(-8, 8, (300,), generator=gen).bfloat16()
    for m in (1, 4, rows):  # the dot-product tiles, and AMX where the CPU has it
        x = torch.randint(-8, 8, (m, 128), generator=gen).bfloat16()
        exact = torch.nn.functional.linear(x.double(), weight.double(), bias.double())
        assert torch.equal(cpu_kernels.linear_bf16(x, weight, bias), exact.bfloat16())  # sums to 8192 round


def test_bf16_linear_keeps_leading_dimensions_and_refuses_wrong_inputs():
    weight = torch.randn(8, 16).bfloat16()
    assert cpu_kernels.linear_bf16(torch.randn(2, 3, 16).bfloat16(), weight, None).shape == (2, 3, 8)
    with pytest.raises(RuntimeError, match="x has 15 features, the weight 16"):
        cpu_kernels.linear_bf16(torch.randn(2, 15).bfloat16(), weight, None)
    with pytest.raises(RuntimeError, match="bfloat16"):
        cpu_kernels.linear_bf16(torch.randn(2, 16), weight, None)
    with pytest.raises(RuntimeError, match="one value per output feature"):
        cpu_kernels.linear_bf16(torch.randn(2, 16).bfloat16(), weight, torch.randn(7).bfloat16())


def test_the_torch_ops_stand_in_gives_what_the_kernel_gives():
    """Where the kernels cannot be built, a compiled graph calls cpu_paged_decode instead: same arguments, padding
    rows included, same cache writes and (for the real rows) the same output."""
    cache, q, k, v, slots, lens, tables = _paged_batch(torch.float32, [7, 0, 50])
    tables[1] = 0  # a padding row's table as the compiled graph's buffers hold it
    theirs = cache.clone()
    out = cpu_kernels.paged_decode(q, k, v, cache, 1, slots, lens, tables, 0.125)
    stand_in = cpu_paged_decode(q, k, v, theirs, 1, slots, lens, tables, 0.125)
    assert torch.equal(cache, theirs)
    assert (out[[0, 2]] - stand_in[[0, 2]]).abs().max() < 1e-5


def test_fp16_weight_layers_fall_back_to_fbgemm_without_the_kernels(monkeypatch):
    if not fp16_weights.fp16_weights_supported():
        pytest.skip("this torch build or CPU has no FBGEMM fp16 GEMM")
    weight, bias = torch.randn(40, 24) * 0.1, torch.randn(40)
    x = torch.randn(3, 24)
    native = fp16_weights.Fp16WeightLinear(weight, bias)
    monkeypatch.setattr(cpu_kernels, "available", lambda: False)
    packed = fp16_weights.Fp16WeightLinear(weight, None)
    assert native.native and not packed.native
    expected = torch.nn.functional.linear(x, weight.half().float())
    assert (native(x) - expected - bias).abs().max() < 1e-4
    assert (packed(x) - expected).abs().max() < 1e-4


@pytest.mark.slow  # a real build: about a minute on 2 cores
def test_a_fresh_build_leaves_only_the_finished_library(tmp_path):
    """A process that starts while another builds must never find a half-linked library: the build happens in a
    folder of its own and only the linked file is renamed into place."""
    code = ("from engine.infer import cpu_kernels; import torch; assert cpu_kernels.available(); "
            "print(cpu_kernels.build_dir()); "
            "w = cpu_kernels.pack_f16w(torch.ones(8, 4)); print(cpu_kernels.linear_f16w(torch.ones(1, 4), w, None, 8))")
    env = dict(os.environ, INKSTONE_CPU_KERNELS_DIR=str(tmp_path))
    env.pop("INKSTONE_NO_CPU_KERNELS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.splitlines()[0])
    assert folder.parent == tmp_path
    assert [p.name for p in folder.iterdir()] == [f"{cpu_kernels.NAME}.so"]
    assert "4., 4., 4." in done.stdout


@pytest.mark.parametrize("vocab", [1, 7, 8, 9, 49152 + 3])
def test_row_argmax_and_finiteness_match_torch(vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(5, vocab, generator=gen)
    logits[1] = torch.randint(0, 3, (vocab,), generator=gen).float()  # many ties: the first one wins
    logits[2, vocab // 2:] = float("-inf")  # masked tokens
    logits[3] = float("-inf")  # everything masked: index 0, as torch gives
    assert cpu_kernels.rows_argmax(logits).tolist() == logits.argmax(-1).tolist()
    assert cpu_kernels.rows_finite(logits).tolist() == [True, True, False, False, True]
    for bad in (float("nan"), float("inf")):
        row = torch.randn(1, vocab, generator=gen)
        row[0, vocab - 1] = bad
        assert cpu_kernels.rows_finite(row).tolist() == [False]


def test_row_ops_refuse_what_they_cannot_read():
    with pytest.raises(RuntimeError, match="contiguous float32"):
        cpu_kernels.rows_argmax(torch.zeros(2, 8, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="contiguous float32"):
        cpu_kernels.rows_finite(torch.zeros(8, 2).t())
    with pytest.raises(RuntimeError, match="empty vocabulary"):
        cpu_kernels.rows_argmax(torch.zeros(2, 0))


def test_norm_rotary_and_silu_kernels_compute_what_the_torch_ops_do():
    gen = torch.Generator().manual_seed(3)
    x, residual = torch.randn(37, 96, generator=gen), torch.randn(37, 96, generator=gen)
    weight = torch.randn(96, generator=gen)
    assert torch.allclose(cpu_kernels.rms_norm(x, weight, 1e-6), rms_norm(x, weight, 1e-6), atol=1e-5)
    for ours, theirs in zip(cpu_kernels.add_rms_norm(x, residual, weight, 1e-6),
                            add_rms_norm(x, residual, weight, 1e-6), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)
    gate_up = torch.randn(37, 2 * 50, generator=gen) * 4
    assert torch.allclose(cpu_kernels.silu_and_mul(gate_up), silu_and_mul(gate_up), atol=1e-5)
    # q and k as the model has them: views into one fused qkv projection, each token's heads contiguous.
    qkv = torch.randn(37, (4 + 2 + 2) * 16, generator=gen)
    q, k = qkv[:, :64].view(37, 4, 16), qkv[:, 64:96].view(37, 2, 16)
    table = RotaryEmbedding(16, 100, {"rope_theta": 10000.0}).cos_sin
    positions = torch.randint(0, 100, (37,), generator=gen)
    for ours, theirs in zip(cpu_kernels.rotary(table, positions, q, k), apply_rotary(table, positions, q, k),
                            strict=True):
        assert ours.is_contiguous() and torch.allclose(ours, theirs, atol=1e-6)


def test_norm_rotary_and_silu_kernels_refuse_what_they_cannot_read():
    table = RotaryEmbedding(16, 10, {"rope_theta": 10000.0}).cos_sin
    q, k = torch.randn(2, 4, 16), torch.randn(2, 2, 16)
    with pytest.raises(RuntimeError, match="position 10 is outside the table"):
        cpu_kernels.rotary(table, torch.tensor([0, 10]), q, k)
    with pytest.raises(RuntimeError, match="head_dim 8"):
        cpu_kernels.rotary(table, torch.tensor([0, 1]), torch.randn(2, 4, 8), torch.randn(2, 2, 8))
    with pytest.raises(RuntimeError, match="float32"):
        cpu_kernels.rms_norm(torch.randn(2, 8, dtype=torch.float64), torch.ones(8), 1e-6)
    with pytest.raises(RuntimeError, match="differ in shape"):
        cpu_kernels.add_rms_norm(torch.randn(2, 8), torch.randn(3, 8), torch.ones(8), 1e-6)
    with pytest.raises(RuntimeError, match="even number"):
        cpu_kernels.silu_and_mul(torch.randn(2, 7))


def test_bf16_kernel_engines_follow_the_torch_ops_on_the_bundled_model(bundled_model_dir):
    """dtype auto on a CPU with AVX512-BF16: decode-sized linears through the streaming kernel, prefill through
    ATen, and the same greedy text as the plain bf16 model (only the order of fp32 additions differs)."""
    fast = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", num_kv_blocks=64))
    if not fast.runner.bf16_kernel:
        pytest.skip("no AVX512-BF16: dtype auto does not use the bf16 kernel")
    plain = LLMEngine(str(bundled_model_dir), EngineConfig(device="cpu", dtype="bfloat16", num_kv_blocks=64))
    assert not plain.runner.bf16_kernel
    texts = ["The capital of France is", "写一首关于春天的诗", "def fibonacci(n):", "List three primary colors:",
             "Translate to French: good morning", "人工智能的未来是"]
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    for batch in (texts[:2], texts):  # decode steps of 2 rows (dot-product tiles) and of 6 (AMX where present)
        prompts = [fast.tokenizer.encode(text) for text in batch]
        ours = [r.token_ids for r in fast.generate(prompts, params)]
        assert ours == [r.token_ids for r in plain.generate(prompts, params)]


def test_fp16_weight_engines_run_eager_steps_through_the_kernels(tiny_model_dir):
    """dtype auto without native bf16: eager steps use the one-pass kernels, and generate what the torch ops do."""
    path = tiny_model_dir("llama")
    fast = LLMEngine(str(path), EngineConfig(device="cpu", num_kv_blocks=64))
    if not fast.runner.fp16_weights:
        pytest.skip("this CPU runs bf16 natively: dtype auto does not use fp16 weights")
    plain = LLMEngine(str(path), EngineConfig(device="cpu", num_kv_blocks=64))
    for module in plain.runner.model.modules():  # back to the torch ops
        if isinstance(module, RMSNorm):
            module._norm, module._add_norm = rms_norm, add_rms_norm
        elif isinstance(module, SiluAndMul):
            module._fn = silu_and_mul
        elif isinstance(module, RotaryEmbedding):
            module._apply_fn = apply_rotary
    norm = fast.runner.model.layers[0].input_layernorm
    assert norm._norm is not rms_norm
    prompts = [fast.tokenizer.encode(text) for text in ("The capital of France is", "写一首关于春天的诗")]
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    ours = [r.token_ids for r in fast.generate(prompts, params)]
    assert ours == [r.token_ids for r in plain.generate(prompts, params)]
