"""Split-KV (flash-decoding) attention of one new token per sequence over the paged KV cache.

Decode is bound by reading K/V. One program per (sequence, KV head) leaves most of the GPU idle at small batch,
so each sequence's context is cut into `num_splits` equal parts, one program each, and a second small kernel
merges the partial softmaxes. A program serves every query head of its KV-head group (GQA) with one `tl.dot`
whose M dimension is the group, so each K/V page is read once, not once per query head.

Nothing here reads a tensor back to the host: the split count depends only on the batch size and the block
table's width, and each sequence cuts its own length into that many parts inside the kernel, so a launch can
be captured in a CUDA graph and replayed for any lengths.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from engine.infer.kernels.paged_inputs import check_paged_inputs

_LOG2E = 1.4426950408889634
_MIN_SPLIT_TOKENS = 128  # below this a split's fixed cost outweighs the extra parallelism
_MAX_SPLITS = 64


@triton.jit
def _decode_split_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, seq_lens_ptr, block_tables_ptr, out_ptr, part_out_ptr, part_lse_ptr,
    qk_scale,
    stride_qb, stride_qh, stride_ob, stride_oh,
    stride_cb, stride_cs, stride_ch, stride_bt,
    head_dim, group,
    BLOCK_SIZE: tl.constexpr, NUM_SPLITS: tl.constexpr,
    GROUP_PAD: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + seq)
    split_len = tl.cdiv(tl.cdiv(seq_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, seq_len)

    rows = tl.arange(0, GROUP_PAD)
    heads = kv_head * group + rows
    dims = tl.arange(0, D_PAD)
    dim_mask = dims < head_dim
    io_mask = (rows[:, None] < group) & dim_mask[None, :]
    q = tl.load(q_ptr + seq * stride_qb + heads[:, None] * stride_qh + dims[None, :], mask=io_mask, other=0.0)

    m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    l_i = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, D_PAD], tl.float32)
    table_ptr = block_tables_ptr + seq.to(tl.int64) * stride_bt
    for tile in range(start, end, BLOCK_N):
        pos = tile + tl.arange(0, BLOCK_N)
        in_range = pos < end
        page = tl.load(table_ptr + pos // BLOCK_SIZE, mask=in_range, other=0).to(tl.int64)
        kv_off = (page[:, None] * stride_cb + (pos % BLOCK_SIZE)[:, None] * stride_cs
                  + kv_head * stride_ch + dims[None, :])
        kv_mask = in_range[:, None] & dim_mask[None, :]
        k = tl.load(k_cache_ptr + kv_off, mask=kv_mask, other=0.0)
        qk = tl.dot(q, tl.trans(k)) * qk_scale
        qk = tl.where(in_range[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.exp2(qk - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_cache_ptr + kv_off, mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    # An empty split (a sequence shorter than the others' splits) leaves l_i = 0: it reports weight zero.
    has_keys = l_i > 0
    out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    if NUM_SPLITS == 1:
        tl.store(out_ptr + seq * stride_ob + heads[:, None] * stride_oh + dims[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=io_mask)
    else:
        # Partials laid out [B, H, NUM_SPLITS, D_PAD] and [B, H, NUM_SPLITS] (log2-sum-exp), contiguous.
        part_row = (seq * (group * tl.num_programs(1)) + heads) * NUM_SPLITS + split
        tl.store(part_out_ptr + part_row[:, None] * D_PAD + dims[None, :], out, mask=io_mask)
        lse = tl.where(has_keys, m_i + tl.log2(tl.where(has_keys, l_i, 1.0)), float("-inf"))
        tl.store(part_lse_ptr + part_row, lse, mask=rows < group)


@triton.jit
def _decode_merge_kernel(
    part_out_ptr, part_lse_ptr, out_ptr,
    stride_ob, stride_oh, head_dim,
    NUM_SPLITS: tl.constexpr, SPLITS_PAD: tl.constexpr, D_PAD: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)
    dims = tl.arange(0, D_PAD)
    row = (seq * tl.num_programs(1) + head) * NUM_SPLITS
    lse = tl.load(part_lse_ptr + row + splits, mask=splits < NUM_SPLITS, other=float("-inf"))
    lse_max = tl.max(lse, 0)
    # A sequence of length 0 (batch padding) has no split with keys: give it zeros, not NaN.
    weight = tl.exp2(lse - tl.where(lse_max == float("-inf"), 0.0, lse_max))
    total = tl.sum(weight, 0)
    parts = tl.load(part_out_ptr + (row + splits)[:, None] * D_PAD + dims[None, :],
                    mask=(splits[:, None] < NUM_SPLITS) & (dims[None, :] < head_dim), other=0.0)
    out = tl.sum(parts * weight[:, None], 0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + seq * stride_ob + head * stride_oh + dims, out.to(out_ptr.dtype.element_ty),
             mask=dims < head_dim)


@functools.lru_cache(maxsize=8)
def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the CPU interpreter: enough to make tests split at small batch


def choose_num_splits(batch: int, num_kv_heads: int, max_context: int, device: torch.device) -> int:
    """Splits per sequence so that batch × KV heads × splits covers about two waves of the GPU's SMs,
    without cutting `max_context` tokens into parts shorter than `_MIN_SPLIT_TOKENS`."""
    wanted = triton.cdiv(2 * _multiprocessors(device), batch * num_kv_heads)
    worthwhile = triton.cdiv(max_context, _MIN_SPLIT_TOKENS)
    return max(1, min(wanted, worthwhile, _MAX_SPLITS))


def paged_attention_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Attention of one query token per sequence, `q [B, H, D]`, over its whole paged context; returns
    `[B, H, D]` in q's dtype. `seq_lens` int32 `[B]` counts the context including the new token.

    `num_splits` overrides the automatic choice (which depends only on B, Hkv and the block table's width).
    """
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    check_paged_inputs(q, k_cache, v_cache)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    q = q if q.stride(-1) == 1 else q.contiguous()
    block_size = k_cache.shape[1]
    if num_splits is None:
        num_splits = choose_num_splits(batch, num_kv_heads, block_tables.shape[1] * block_size, q.device)
    group = num_heads // num_kv_heads
    d_pad = max(16, triton.next_power_of_2(head_dim))
    on_gpu = q.device.type == "cuda"
    # The interpreter gets small tiles so short test contexts span several; a GPU, tiles that keep enough
    # bytes in flight per program.
    block_n = (64 if d_pad * q.element_size() <= 256 else 32) if on_gpu else 16
    if num_splits > 1:
        part_out = torch.empty(batch, num_heads, num_splits, d_pad, dtype=torch.float32, device=q.device)
        part_lse = torch.empty(batch, num_heads, num_splits, dtype=torch.float32, device=q.device)
    else:
        part_out = part_lse = out  # never touched: the kernel writes `out` directly
    _decode_split_kernel[(batch, num_kv_heads, num_splits)](
        q, k_cache, v_cache, seq_lens, block_tables, out, part_out, part_lse,
        scale * _LOG2E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        head_dim, group,
        BLOCK_SIZE=block_size, NUM_SPLITS=num_splits, GROUP_PAD=max(16, triton.next_power_of_2(group)), D_PAD=d_pad,
        BLOCK_N=block_n, num_warps=4 if on_gpu else 1, num_stages=3 if on_gpu else 1,
    )
    if num_splits > 1:
        _decode_merge_kernel[(batch, num_heads)](
            part_out, part_lse, out, out.stride(0), out.stride(1), head_dim,
            NUM_SPLITS=num_splits, SPLITS_PAD=triton.next_power_of_2(num_splits), D_PAD=d_pad,
            num_warps=4 if on_gpu else 1,
        )
    return out
