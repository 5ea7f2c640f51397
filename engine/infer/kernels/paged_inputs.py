"""The input checks both attention kernels need before launch: GQA head ratio and the cache layout they index."""

from __future__ import annotations

import torch


def check_paged_inputs(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    """Raise ValueError unless query heads group evenly over KV heads and both caches share a layout with a
    contiguous head_dim (the kernels read K and V with one set of strides)."""
    num_heads, num_kv_heads = q.shape[1], k_cache.shape[2]
    if num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} query heads are not a multiple of {num_kv_heads} KV heads")
    if k_cache.stride() != v_cache.stride() or k_cache.stride(-1) != 1:
        raise ValueError("k_cache and v_cache must share strides with a contiguous head_dim")
