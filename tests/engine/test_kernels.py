"""The paged-KV Triton kernels against a plain torch reference.

Without a GPU the kernels run on CPU tensors under `TRITON_INTERPRET=1` (fp32 and fp16: the interpreter gets
bf16 wrong); with CUDA the `gpu`-marked cases run them compiled, in bf16, with GPU-sized pages and heads.
Cache slots that no sequence owns are filled with NaN, so a kernel reading outside a context cannot pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

# The interpreter must be chosen before triton is imported; on a CUDA machine the kernels run compiled.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from engine.infer.kernels import paged_attention_decode, paged_attention_prefill, store_kvcache  # noqa: E402
from engine.infer.kernels.decode_attention import choose_num_splits  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class Case:
    device: str
    dtype: torch.dtype
    block_size: int
    head_dim: int
    length_scale: int  # GPU cases stretch the CPU lengths so tiles and splits are GPU-sized too
    tol: float


def _cases() -> list:
    cpu_skip = pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")
    gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETED,
                                               reason="needs CUDA with compiled triton")]
    return [
        pytest.param(Case("cpu", torch.float32, 16, 32, 1, 1e-4), marks=cpu_skip, id="cpu-fp32"),
        pytest.param(Case("cpu", torch.float16, 16, 24, 1, 3e-3), marks=cpu_skip, id="cpu-fp16-d24"),
        pytest.param(Case("cuda", torch.bfloat16, 16, 128, 16, 2e-2), marks=gpu, id="cuda-bf16-bs16"),
        pytest.param(Case("cuda", torch.bfloat16, 256, 64, 32, 2e-2), marks=gpu, id="cuda-bf16-bs256"),
    ]


CASES = _cases()
GQA = pytest.mark.parametrize("num_heads,num_kv_heads", [(2, 2), (6, 2), (4, 1)], ids=["mha", "gqa3", "gqa4"])


def make_cache(case: Case, seq_lens: list[int], num_kv_heads: int, gen: torch.Generator):
    """Random K/V for every owned slot, NaN elsewhere, pages shuffled, block tables padded with -1."""
    bs = case.block_size
    pages_per_seq = [-(-n // bs) for n in seq_lens]
    num_blocks = sum(pages_per_seq) + 3
    order = torch.randperm(num_blocks, generator=gen)
    shape = (num_blocks, bs, num_kv_heads, case.head_dim)
    k_cache = torch.randn(shape, generator=gen)
    v_cache = torch.randn(shape, generator=gen)
    owned = torch.zeros(num_blocks, bs, dtype=torch.bool)
    tables = torch.full((len(seq_lens), max(pages_per_seq) + 2), -1, dtype=torch.int32)
    used = 0
    for b, n in enumerate(seq_lens):
        pages = order[used:used + pages_per_seq[b]]
        used += pages_per_seq[b]
        tables[b, :len(pages)] = pages.to(torch.int32)
        pos = torch.arange(n)
        owned[pages[pos // bs], pos % bs] = True
    k_cache[~owned] = float("nan")
    v_cache[~owned] = float("nan")
    k_cache, v_cache = k_cache.to(case.dtype), v_cache.to(case.dtype)
    dev = case.device
    return k_cache.to(dev), v_cache.to(dev), tables.to(dev)


def reference(q, k_cache, v_cache, q_lens, seq_lens, tables, scale):
    """Gather each context through its block table, expand GQA, masked softmax in fp32."""
    bs, group = k_cache.shape[1], q.shape[1] // k_cache.shape[2]
    outs, first = [], 0
    for b, (q_len, n) in enumerate(zip(q_lens, seq_lens, strict=True)):
        pos = torch.arange(n, device=q.device)
        pages = tables[b].long()[pos // bs]
        k = k_cache[pages, pos % bs].float().repeat_interleave(group, dim=1)
        v = v_cache[pages, pos % bs].float().repeat_interleave(group, dim=1)
        qb = q[first:first + q_len].float()
        scores = torch.einsum("qhd,khd->hqk", qb, k) * scale
        q_pos = n - q_len + torch.arange(q_len, device=q.device)
        scores = scores.masked_fill(pos[None, None, :] > q_pos[None, :, None], float("-inf"))
        outs.append(torch.einsum("hqk,khd->qhd", scores.softmax(-1), v))
        first += q_len
    return torch.cat(outs)


def run_prefill(case, q_lens, seq_lens, num_heads, num_kv_heads, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k_cache, v_cache, tables = make_cache(case, seq_lens, num_kv_heads, gen)
    q = torch.randn(sum(q_lens), num_heads, case.head_dim, generator=gen).to(case.device, case.dtype)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32, device=case.device)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=case.device)
    scale = case.head_dim ** -0.5
    out = paged_attention_prefill(q, k_cache, v_cache, cu, lens, tables, scale)
    assert out.shape == q.shape and out.dtype == case.dtype
    expected = reference(q, k_cache, v_cache, q_lens, seq_lens, tables, scale)
    torch.testing.assert_close(out.float(), expected, atol=case.tol, rtol=case.tol)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
def test_store_kvcache_from_fused_qkv_view_skips_negative_slots(case, slot_dtype):
    gen = torch.Generator().manual_seed(1)
    num_heads, num_kv_heads, n = 6, 3, 11
    num_blocks, d = 4, case.head_dim
    qkv = torch.randn(n, num_heads + 2 * num_kv_heads, d, generator=gen).to(case.device, case.dtype)
    key = qkv[:, num_heads:num_heads + num_kv_heads]
    value = qkv[:, num_heads + num_kv_heads:]
    assert not key.is_contiguous()
    shape = (num_blocks, case.block_size, num_kv_heads, d)
    k_cache = torch.randn(shape, generator=gen).to(case.device, case.dtype)
    v_cache = torch.randn(shape, generator=gen).to(case.device, case.dtype)
    slots = torch.randperm(num_blocks * case.block_size, generator=gen)[:n]
    slots[[2, 7]] = -1
    expected_k, expected_v = k_cache.clone(), v_cache.clone()
    keep = slots >= 0
    expected_k.view(-1, num_kv_heads, d)[slots[keep].to(case.device)] = key[keep.to(case.device)]
    expected_v.view(-1, num_kv_heads, d)[slots[keep].to(case.device)] = value[keep.to(case.device)]

    store_kvcache(key, value, k_cache, v_cache, slots.to(case.device, slot_dtype))

    assert torch.equal(k_cache, expected_k)
    assert torch.equal(v_cache, expected_v)


@pytest.mark.parametrize("case", CASES)
@GQA
@pytest.mark.parametrize("scenario", ["prefill", "prefix_hit", "chunk"])
def test_prefill_matches_reference(case, num_heads, num_kv_heads, scenario):
    s = case.length_scale
    seq_lens = {"prefill": [17, 1, 40, 33], "prefix_hit": [50, 37, 16], "chunk": [64, 45, 9, 20]}[scenario]
    seq_lens = [n * s for n in seq_lens]
    q_lens = {
        "prefill": seq_lens,
        "prefix_hit": [7 * s, 20 * s + 3, 16 * s],  # the cached prefix covers whole pages; queries the rest
        # A mid-sequence chunk, a decode token, a first chunk and a sequence with no new token, together.
        "chunk": [16 * s, 1, 9 * s, 0],
    }[scenario]
    run_prefill(case, q_lens, seq_lens, num_heads, num_kv_heads)


@pytest.mark.parametrize("case", CASES)
def test_chunked_prefill_through_store_equals_one_shot(case):
    """Store K/V and attend chunk by chunk, as the scheduler does; the outputs must equal one full prefill."""
    gen = torch.Generator().manual_seed(2)
    num_heads, num_kv_heads, n, d, dev = 4, 2, 37 * case.length_scale, case.head_dim, case.device
    q = torch.randn(n, num_heads, d, generator=gen).to(dev, case.dtype)
    k = torch.randn(n, num_kv_heads, d, generator=gen).to(dev, case.dtype)
    v = torch.randn(n, num_kv_heads, d, generator=gen).to(dev, case.dtype)
    pages = -(-n // case.block_size)
    k_cache = torch.zeros(pages + 2, case.block_size, num_kv_heads, d, dtype=case.dtype, device=dev)
    v_cache = torch.zeros_like(k_cache)
    table = torch.randperm(pages + 2, generator=gen)[:pages].to(torch.int32)[None].to(dev)
    pos = torch.arange(n)
    slots = (table[0].cpu().long()[pos // case.block_size] * case.block_size + pos % case.block_size).to(dev)
    scale = d ** -0.5
    outs, done = [], 0
    for chunk in (13 * case.length_scale, 1, 20 * case.length_scale, n):
        end = min(done + chunk, n)
        store_kvcache(k[done:end], v[done:end], k_cache, v_cache, slots[done:end])
        cu = torch.tensor([0, end - done], dtype=torch.int32, device=dev)
        lens = torch.tensor([end], dtype=torch.int32, device=dev)
        outs.append(paged_attention_prefill(q[done:end], k_cache, v_cache, cu, lens, table, scale))
        done = end
    expected = reference(q, k_cache, v_cache, [n], [n], table, scale)
    torch.testing.assert_close(torch.cat(outs).float(), expected, atol=case.tol, rtol=case.tol)


@pytest.mark.parametrize("case", CASES)
@GQA
@pytest.mark.parametrize("num_splits", [None, 1, 3, 8])
def test_decode_matches_reference(case, num_heads, num_kv_heads, num_splits):
    gen = torch.Generator().manual_seed(3)
    seq_lens = [1, 16, 100 * case.length_scale, 17, 63 * case.length_scale]
    k_cache, v_cache, tables = make_cache(case, seq_lens, num_kv_heads, gen)
    q = torch.randn(len(seq_lens), num_heads, case.head_dim, generator=gen).to(case.device, case.dtype)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=case.device)
    scale = case.head_dim ** -0.5
    out = paged_attention_decode(q, k_cache, v_cache, lens, tables, scale, num_splits=num_splits)
    assert out.shape == q.shape and out.dtype == case.dtype
    expected = reference(q, k_cache, v_cache, [1] * len(seq_lens), seq_lens, tables, scale)
    torch.testing.assert_close(out.float(), expected, atol=case.tol, rtol=case.tol)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("num_splits", [1, 4])
def test_decode_zero_length_padding_row_gives_zeros(case, num_splits):
    """A CUDA-graph batch padded with seq_len 0 rows must not produce NaN (nor disturb the real rows)."""
    gen = torch.Generator().manual_seed(4)
    seq_lens = [30, 0]
    k_cache, v_cache, tables = make_cache(case, [30, 1], 2, gen)
    q = torch.randn(2, 4, case.head_dim, generator=gen).to(case.device, case.dtype)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=case.device)
    out = paged_attention_decode(q, k_cache, v_cache, lens, tables, 0.1, num_splits=num_splits)
    expected = reference(q[:1], k_cache, v_cache, [1], [30], tables, 0.1)
    torch.testing.assert_close(out[:1].float(), expected, atol=case.tol, rtol=case.tol)
    assert torch.equal(out[1], torch.zeros_like(out[1]))


def test_num_splits_fill_the_gpu_at_batch_one_only():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # any SM count shows the shape
    assert choose_num_splits(1, 1, 4096, device) > 1
    assert choose_num_splits(256, 8, 4096, device) == 1
    assert choose_num_splits(1, 1, 64, device) == 1  # too short to be worth splitting
    assert choose_num_splits(1, 1, 1 << 20, device) <= 64
