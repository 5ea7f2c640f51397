"""The torch paged-attention ops and rotary embedding against dense references and transformers' formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from engine.infer.layers.attention import paged_attention_decode, paged_attention_prefill, store_kvcache
from engine.infer.layers.rotary import inverse_frequencies

BLOCK, HKV, H, D = 4, 2, 6, 8


def dense_attention(q, k, v, start: int) -> torch.Tensor:
    """q [q_len, H, D] at positions start.., k/v [L, Hkv, D]: causal softmax attention in plain math."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * D**-0.5
    pos_q = torch.arange(start, start + q.shape[0])[:, None]
    scores = scores.masked_fill(torch.arange(k.shape[0])[None, :] > pos_q, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


def paged_setup(lengths: list[int], seed: int = 0):
    """Random K/V for sequences of the given lengths, scattered over shuffled blocks; NaN everywhere else."""
    gen = torch.Generator().manual_seed(seed)
    num_blocks = sum((n + BLOCK - 1) // BLOCK for n in lengths) + 3
    k_cache = torch.full((num_blocks, BLOCK, HKV, D), float("nan"))
    v_cache = torch.full_like(k_cache, float("nan"))
    order = torch.randperm(num_blocks, generator=gen).tolist()
    width = max((n + BLOCK - 1) // BLOCK for n in lengths) + 1
    tables = torch.full((len(lengths), width), -1, dtype=torch.int32)
    keys, values = [], []
    for b, n in enumerate(lengths):
        blocks = [order.pop() for _ in range((n + BLOCK - 1) // BLOCK)]
        tables[b, :len(blocks)] = torch.tensor(blocks)
        k, v = torch.randn(n, HKV, D, generator=gen), torch.randn(n, HKV, D, generator=gen)
        slots = torch.tensor([blocks[p // BLOCK] * BLOCK + p % BLOCK for p in range(n)])
        store_kvcache(k, v, k_cache, v_cache, slots)
        keys.append(k)
        values.append(v)
    return k_cache, v_cache, tables, keys, values


def test_store_skips_negative_slots():
    k_cache = torch.zeros(2, BLOCK, HKV, D)
    v_cache = torch.zeros_like(k_cache)
    key = torch.ones(3, HKV, D)
    store_kvcache(key, key * 2, k_cache, v_cache, torch.tensor([5, -1, 0]))
    assert k_cache.view(-1, HKV, D)[[0, 5]].eq(1).all() and v_cache.view(-1, HKV, D)[[0, 5]].eq(2).all()
    assert k_cache.view(-1, HKV, D).abs().sum() == 2 * HKV * D


@pytest.mark.parametrize("q_lens", [[7, 1, 13], [3, 3, 1]])
def test_prefill_matches_dense_attention_with_cached_prefixes(q_lens):
    lengths = [7, 9, 13]  # q_len == length: plain prefill; shorter: prefix-cache hit or later chunk
    k_cache, v_cache, tables, keys, values = paged_setup(lengths)
    gen = torch.Generator().manual_seed(1)
    qs = [torch.randn(n, H, D, generator=gen) for n in q_lens]
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    out = paged_attention_prefill(torch.cat(qs), k_cache, v_cache, cu, torch.tensor(lengths, dtype=torch.int32),
                                  tables, D**-0.5)
    expected = torch.cat([dense_attention(q, k, v, n - len(q)) for q, k, v, n in zip(qs, keys, values, lengths,
                                                                                        strict=True)])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_decode_matches_dense_attention_and_ignores_garbage_slots(dtype, tol):
    """fp32 runs torch's fused SDPA, bf16 its own matmul-softmax-matmul: both against fp32 math on the same
    (rounded) inputs."""
    lengths = [1, 6, 13, 4]
    k_cache, v_cache, tables, keys, values = paged_setup(lengths, seed=2)
    q = torch.randn(len(lengths), H, D)
    q, k_cache, v_cache = q.to(dtype), k_cache.to(dtype), v_cache.to(dtype)
    out = paged_attention_decode(q, k_cache, v_cache, torch.tensor(lengths, dtype=torch.int32), tables, D**-0.5)
    assert out.dtype == dtype and torch.isfinite(out).all()
    expected = torch.cat([dense_attention(q[b:b + 1].float(), keys[b].to(dtype).float(),
                                          values[b].to(dtype).float(), lengths[b] - 1)
                          for b in range(len(lengths))])
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=tol)


def test_plain_prefill_equals_sdpa():
    k_cache, v_cache, tables, keys, values = paged_setup([10])
    q = torch.randn(10, H, D)
    out = paged_attention_prefill(q, k_cache, v_cache, torch.tensor([0, 10], dtype=torch.int32),
                                  torch.tensor([10], dtype=torch.int32), tables, D**-0.5)
    ref = F.scaled_dot_product_attention(q.transpose(0, 1), keys[0].repeat_interleave(3, 1).transpose(0, 1),
                                         values[0].repeat_interleave(3, 1).transpose(0, 1), is_causal=True)
    torch.testing.assert_close(out, ref.transpose(0, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope", [
    {"rope_type": "default", "rope_theta": 100000.0},
    {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 256, "rope_theta": 500000.0},
])
def test_inverse_frequencies_equal_transformers(rope):
    config = AutoConfig.for_model("llama", hidden_size=256, num_attention_heads=4, rope_parameters=rope)
    expected, _ = ROPE_INIT_FUNCTIONS[rope["rope_type"]](config, "cpu") if rope["rope_type"] != "default" else (
        1.0 / (rope["rope_theta"] ** (torch.arange(0, 64, 2, dtype=torch.int64).float() / 64)), None)
    assert torch.equal(inverse_frequencies(64, rope), expected)


def test_unsupported_rope_type_names_the_field():
    with pytest.raises(ValueError, match="^rope_scaling: rope_type 'dynamic'"):
        inverse_frequencies(64, {"rope_type": "dynamic", "factor": 2.0})
