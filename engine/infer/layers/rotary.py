"""Rotary position embedding with a precomputed cos/sin table, indexed by each token's absolute position.

Tokens in a step come from many sequences at different positions, so the table lookup by position replaces
HF's per-batch recomputation. Frequencies follow transformers' formulas for the rope types llama-family
checkpoints use (default, linear, llama3), so fp32 results match HF bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.infer import cpu_kernels

SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


def inverse_frequencies(head_dim: int, rope: dict) -> torch.Tensor:
    """HF's inv_freq for rope parameters {rope_type, rope_theta, factor, ...}; ValueError for other types."""
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"rope_scaling: rope_type {rope_type!r} is not supported by the inference engine "
                         f"(supported: {', '.join(SUPPORTED_ROPE_TYPES)})")
    base = float(rope.get("rope_theta", 10000.0))
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if rope_type == "linear":
        return inv_freq / float(rope["factor"])
    if rope_type == "llama3":
        return _llama3(inv_freq, rope)
    return inv_freq


def _llama3(inv_freq: torch.Tensor, rope: dict) -> torch.Tensor:
    # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    factor = rope["factor"]
    low, high = rope["low_freq_factor"], rope["high_freq_factor"]
    old_len = rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_position: int, rope: dict):
        super().__init__()
        inv_freq = inverse_frequencies(head_dim, rope)
        freqs = torch.outer(torch.arange(max_position, dtype=torch.float32), inv_freq)
        self.register_buffer("cos_sin", torch.cat([freqs.cos(), freqs.sin()], dim=-1), persistent=False)
        self._apply_fn = apply_rotary

    def use_compiled(self) -> None:
        """Swap in a torch.compile'd version (CUDA only)."""
        self._apply_fn = torch.compile(apply_rotary, dynamic=True)

    def use_cpu_kernels(self) -> None:
        """Swap in the one-pass C++ kernel for eager fp32 steps on the CPU (cpu_kernels/norm_act.cpp)."""
        self._apply_fn = cpu_kernels.eager_only(cpu_kernels.rotary, apply_rotary)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
        """q [T, H, D], k [T, Hkv, D], positions [T] -> rotated (q, k)."""
        return self._apply_fn(self.cos_sin, positions, q, k)


def apply_rotary(cos_sin: torch.Tensor, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor):
    cos, sin = cos_sin.index_select(0, positions).unsqueeze(1).chunk(2, dim=-1)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    cos, sin = cos.to(dtype), sin.to(dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
