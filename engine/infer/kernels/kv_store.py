"""Write the new tokens' keys and values into the paged KV cache with one Triton launch.

The model runner hands every layer the K/V of all tokens scheduled this step (prefill and decode mixed) and a
slot per token (`block_id * block_size + offset`). A torch `index_copy_` would need contiguous inputs and one
launch per tensor; this kernel reads key/value straight from the fused-qkv views (any token/head stride) and
writes both caches in one pass. Slot -1 marks a token that must not be cached (padding in a CUDA-graph batch).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _store_kvcache_kernel(
    key_ptr, value_ptr, k_cache_ptr, v_cache_ptr, slot_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_cb, stride_cs, stride_ch,
    num_kv_heads, head_dim,
    BLOCK_SIZE: tl.constexpr, HEADS_PAD: tl.constexpr, D_PAD: tl.constexpr,
):
    tok = tl.program_id(0)
    slot = tl.load(slot_ptr + tok).to(tl.int64)
    if slot < 0:
        return
    # Page and offset from the slot through the cache's own strides, so a cache view with padded rows works.
    page = slot // BLOCK_SIZE
    offset = slot % BLOCK_SIZE
    heads = tl.arange(0, HEADS_PAD)
    dims = tl.arange(0, D_PAD)
    mask = (heads[:, None] < num_kv_heads) & (dims[None, :] < head_dim)
    src_k = key_ptr + tok.to(tl.int64) * stride_kt + heads[:, None] * stride_kh + dims[None, :]
    src_v = value_ptr + tok.to(tl.int64) * stride_vt + heads[:, None] * stride_vh + dims[None, :]
    dst = page * stride_cb + offset * stride_cs + heads[:, None] * stride_ch + dims[None, :]
    tl.store(k_cache_ptr + dst, tl.load(src_k, mask=mask), mask=mask)
    tl.store(v_cache_ptr + dst, tl.load(src_v, mask=mask), mask=mask)


def store_kvcache(
    key: torch.Tensor,
    value: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Copy `key`/`value` `[N, Hkv, D]` into `k_cache`/`v_cache` `[blocks, block_size, Hkv, D]` at the slots.

    In place; a slot of -1 is skipped. key/value may be strided views (only the last dim must be unit-stride;
    otherwise they are copied once).
    """
    num_tokens, num_kv_heads, head_dim = key.shape
    if num_tokens == 0:
        return
    if value.shape != key.shape:
        raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} differ")
    if k_cache.shape != v_cache.shape or k_cache.stride() != v_cache.stride():
        raise ValueError("k_cache and v_cache must share shape and strides")
    if k_cache.shape[2:] != (num_kv_heads, head_dim):
        raise ValueError(f"cache {tuple(k_cache.shape)} does not hold [*, *, {num_kv_heads}, {head_dim}]")
    if k_cache.stride(-1) != 1:
        raise ValueError("the cache's head_dim must be contiguous")
    # A view that is strided in head_dim would defeat vectorised loads; such inputs are rare, copy them.
    key = key if key.stride(-1) == 1 else key.contiguous()
    value = value if value.stride(-1) == 1 else value.contiguous()
    heads_pad = triton.next_power_of_2(num_kv_heads)
    d_pad = triton.next_power_of_2(head_dim)
    _store_kvcache_kernel[(num_tokens,)](
        key, value, k_cache, v_cache, slot_mapping,
        key.stride(0), key.stride(1), value.stride(0), value.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        num_kv_heads, head_dim,
        BLOCK_SIZE=k_cache.shape[1], HEADS_PAD=heads_pad, D_PAD=d_pad,
        num_warps=4 if heads_pad * d_pad >= 1024 else 1,
    )
