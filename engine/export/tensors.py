"""HF tensor names and layouts -> GGUF's, for the llama family (llama, mistral as llama; qwen2).

The q/k permutation reproduces llama.cpp's convert_hf_to_gguf: HF stores rotary pairs as two halves of each
head (rotate_half), GGUF's llama graph expects them interleaved, so the rows of each head are re-ordered.
Qwen2 uses llama.cpp's NEOX rotary (the HF layout), so its weights pass through unchanged.
"""

from __future__ import annotations

import math
import re

import numpy as np

from engine.export.quant_types import ExportError

# HF architecture -> llama.cpp architecture; Mistral is converted as llama, as llama.cpp does.
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}

_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")
_SKIPPED = ("rotary_emb.inv_freq",)  # buffers some old checkpoints saved; llama.cpp computes them


def gguf_name(hf_name: str) -> str | None:
    """The GGUF tensor name, None for tensors llama.cpp does not store; ExportError for unknown ones."""
    if hf_name.endswith(_SKIPPED):
        return None
    if hf_name in _GLOBAL:
        return _GLOBAL[hf_name]
    m = _LAYER_RE.fullmatch(hf_name)
    if m and m.group(2) in _LAYER:
        return f"blk.{m.group(1)}.{_LAYER[m.group(2)]}"
    raise ExportError(f"tensor {hf_name!r} has no GGUF counterpart in the llama family")


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute: rotate-half pairs -> interleaved pairs, per head."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def transform(gguf_tensor: str, data: np.ndarray, arch: str, n_head: int, n_head_kv: int) -> np.ndarray:
    """Re-layout one tensor for llama.cpp (only llama-arch q/k projections change)."""
    if GGUF_ARCH[arch] == "llama":
        if gguf_tensor.endswith("attn_q.weight"):
            return permute_qk(data, n_head)
        if gguf_tensor.endswith("attn_k.weight"):
            return permute_qk(data, n_head_kv)
    return data


def llama3_rope_factors(rope: dict, theta: float, head_dim: int) -> np.ndarray:
    """The rope_freqs tensor llama.cpp needs for Llama-3.1-style rope scaling (as convert_hf_to_gguf)."""
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)
