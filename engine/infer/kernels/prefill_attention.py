"""Causal flash attention for varlen prefill over the paged KV cache.

Prefill, prefill after a prefix-cache hit and each chunk of a chunked prefill all look the same from here: a
sequence has `q_len` new query tokens at the end of a context of `seq_len` tokens whose K/V (new ones included)
already sit in the cache. Reading K/V through the block table means the cache is never gathered into a dense
copy, and the online softmax (accumulated in fp32) never materialises the `[q_len, seq_len]` score matrix.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.infer.kernels.paged_inputs import check_paged_inputs

_LOG2E = 1.4426950408889634


@triton.jit
def _attend_tile(
    q, acc, m_i, l_i, start, q_pos, kv_end, qk_scale,
    k_cache_ptr, v_cache_ptr, table_ptr, kv_head_off, dims, dim_mask,
    stride_cb, stride_cs,
    BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
):
    pos = start + tl.arange(0, BLOCK_N)
    # Rows of a tile may come from different pages (BLOCK_N need not equal BLOCK_SIZE): look each one up.
    if MASKED:
        in_range = pos < kv_end
        page = tl.load(table_ptr + pos // BLOCK_SIZE, mask=in_range, other=0).to(tl.int64)
        load_mask = in_range[:, None] & dim_mask[None, :]
    else:
        page = tl.load(table_ptr + pos // BLOCK_SIZE).to(tl.int64)
        load_mask = dim_mask[None, :]
    kv_off = page[:, None] * stride_cb + (pos % BLOCK_SIZE)[:, None] * stride_cs + kv_head_off + dims[None, :]
    k = tl.load(k_cache_ptr + kv_off, mask=load_mask, other=0.0)
    qk = tl.dot(q, tl.trans(k)) * qk_scale
    if MASKED:
        qk = tl.where((pos[None, :] <= q_pos[:, None]) & in_range[None, :], qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    p = tl.exp2(qk - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(v_cache_ptr + kv_off, mask=load_mask, other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, m_new, l_i


@triton.jit
def _find_sequence(cu_seqlens_ptr, tile, num_seqs, BLOCK_M: tl.constexpr):
    """The last sequence b whose first tile, `cu_seqlens[b] // BLOCK_M + b`, is at or before `tile`."""
    left: tl.int32 = 0
    right = num_seqs
    while left < right:
        mid = (left + right) // 2
        if tl.load(cu_seqlens_ptr + mid) // BLOCK_M + mid <= tile:
            left = mid + 1
        else:
            right = mid
    return left - 1


@triton.jit
def _prefill_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, cu_seqlens_ptr, seq_lens_ptr, block_tables_ptr,
    qk_scale,
    stride_qt, stride_qh, stride_ot, stride_oh,
    stride_cb, stride_cs, stride_ch, stride_bt,
    head_dim, group, num_seqs,
    BLOCK_SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D_PAD: tl.constexpr,
):
    # Sequence b owns grid tiles cu_seqlens[b] // BLOCK_M + b onwards: at least cdiv(q_len, BLOCK_M) of them,
    # so a grid of Tq // BLOCK_M + B tiles covers every sequence without reading the longest q_len on the host.
    grid_tile = tl.program_id(0)
    head = tl.program_id(1)
    seq = _find_sequence(cu_seqlens_ptr, grid_tile, num_seqs, BLOCK_M)
    q_start = tl.load(cu_seqlens_ptr + seq)
    tile = grid_tile - (q_start // BLOCK_M + seq)
    q_len = tl.load(cu_seqlens_ptr + seq + 1) - q_start
    if tile * BLOCK_M >= q_len:
        return
    context = tl.load(seq_lens_ptr + seq) - q_len  # tokens before the first new query
    kv_head = head // group

    rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < q_len
    dims = tl.arange(0, D_PAD)
    dim_mask = dims < head_dim
    q_rows = (q_start + rows).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_qt + head * stride_qh + dims[None, :],
                mask=row_mask[:, None] & dim_mask[None, :], other=0.0)
    # Padding rows act as the tile's last real query, so every row sees at least one key and no NaN appears.
    q_pos = context + tl.minimum(rows, q_len - 1)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    table_ptr = block_tables_ptr + seq.to(tl.int64) * stride_bt
    kv_head_off = kv_head * stride_ch

    # Keys before the tile's first query are visible to every row: no causal mask there.
    kv_end = context + tl.minimum((tile + 1) * BLOCK_M, q_len)
    unmasked_end = ((context + tile * BLOCK_M) // BLOCK_N) * BLOCK_N
    for start in range(0, unmasked_end, BLOCK_N):
        acc, m_i, l_i = _attend_tile(
            q, acc, m_i, l_i, start, q_pos, kv_end, qk_scale,
            k_cache_ptr, v_cache_ptr, table_ptr, kv_head_off, dims, dim_mask,
            stride_cb, stride_cs, BLOCK_SIZE=BLOCK_SIZE, BLOCK_N=BLOCK_N, MASKED=False,
        )
    for start in range(unmasked_end, kv_end, BLOCK_N):
        acc, m_i, l_i = _attend_tile(
            q, acc, m_i, l_i, start, q_pos, kv_end, qk_scale,
            k_cache_ptr, v_cache_ptr, table_ptr, kv_head_off, dims, dim_mask,
            stride_cb, stride_cs, BLOCK_SIZE=BLOCK_SIZE, BLOCK_N=BLOCK_N, MASKED=True,
        )

    out = acc / l_i[:, None]
    tl.store(out_ptr + q_rows[:, None] * stride_ot + head * stride_oh + dims[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & dim_mask[None, :])


def _launch_config(device: torch.device, d_pad: int, elem_size: int) -> dict[str, int]:
    """Tile sizes: flash-attention's usual H100 choices on CUDA, shrunk as a K/V row gets wider (head_dim or
    fp32) so the pipelined tiles stay within shared memory; on the CPU interpreter, small tiles so that small
    test shapes still cross query tiles, KV pages and the masked/unmasked boundary."""
    if device.type != "cuda":
        return dict(BLOCK_M=16, BLOCK_N=32, num_warps=1)
    row_bytes = d_pad * elem_size
    if row_bytes <= 128:
        return dict(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=3)
    if row_bytes <= 256:
        return dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3)
    return dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)


def paged_attention_prefill(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    seq_lens: torch.Tensor,
    block_tables: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Causal attention of varlen queries `q [Tq, H, D]` over paged K/V; returns `[Tq, H, D]` in q's dtype.

    `cu_seqlens_q` int32 `[B+1]` delimits each sequence's queries; `seq_lens` int32 `[B]` is each sequence's
    context length including those queries, whose K/V must already be stored. Nothing is read back to the host.
    """
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    check_paged_inputs(q, k_cache, v_cache)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    batch = seq_lens.shape[0]
    if num_tokens == 0 or batch == 0:
        return out
    q = q if q.stride(-1) == 1 else q.contiguous()
    d_pad = max(16, triton.next_power_of_2(head_dim))
    config = _launch_config(q.device, d_pad, q.element_size())
    grid = (num_tokens // config["BLOCK_M"] + batch, num_heads)
    _prefill_kernel[grid](
        q, k_cache, v_cache, out, cu_seqlens_q, seq_lens, block_tables,
        scale * _LOG2E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        head_dim, num_heads // num_kv_heads, batch,
        BLOCK_SIZE=k_cache.shape[1], D_PAD=d_pad, **config,
    )
    return out
