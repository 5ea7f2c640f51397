"""Pre-flight estimate of a finetune's peak GPU memory and time, from the model's shape and the settings.

It adds up what our trainer keeps alive at its peak: weights (nf4 with double quantization for QLoRA, bf16
for LoRA, fp32 master weights + grads + AdamW states for full), the adapter with its grads and optimizer
states, the checkpointed layer inputs (or every layer's activations without checkpointing), one layer's
recomputed activations (SDPA: linear in sequence length), the chunked loss's logits, and a fixed CUDA
workspace. Time comes from the FLOPs per token and a utilization typical of each method. Calibrated on the
7B QLoRA peak measured on an H100 (GPU-NOTES: 4.5 GiB at seq 1024). Pure arithmetic, no torch: the wizard
calls it on every change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

GIB = 2**30
LOSS_CHUNK = 512  # tokens of logits alive at once (engine.finetune.loss)
WORKSPACE = 0.1 * GIB  # cuBLAS workspace and allocator slack
# Model FLOPs utilization we expect per method (full: GPU-NOTES' 46% plain-HF run; QLoRA dequantizes per matmul).
EXPECTED_MFU = {"full": 0.45, "lora": 0.30, "qlora": 0.15}
DEFAULT_GPU_FLOPS = 989e12  # H100 dense bf16


@dataclass
class ModelShape:
    """What the estimate needs from a model's config.json."""

    hidden: int
    """Hidden size."""
    layers: int
    """Decoder layers."""
    heads: int
    """Attention heads."""
    kv_heads: int
    """Key/value heads (GQA)."""
    ffn: int
    """MLP intermediate size."""
    vocab: int
    """Vocabulary size."""
    tied: bool = False
    """Input and output embeddings shared."""

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        heads = config["num_attention_heads"]
        return cls(hidden=config["hidden_size"], layers=config["num_hidden_layers"], heads=heads,
                   kv_heads=config.get("num_key_value_heads") or heads, ffn=config["intermediate_size"],
                   vocab=config["vocab_size"], tied=bool(config.get("tie_word_embeddings", False)))

    @classmethod
    def from_folder(cls, folder: str | Path) -> ModelShape:
        return cls.from_config(json.loads((Path(folder) / "config.json").read_text()))

    @property
    def linear_params_per_layer(self) -> int:
        kv = self.hidden * self.hidden * self.kv_heads // self.heads
        return 2 * self.hidden * self.hidden + 2 * kv + 3 * self.hidden * self.ffn

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * self.linear_params_per_layer + self.embedding_params

    def lora_params(self, r: int) -> int:
        kv_out = self.hidden * self.kv_heads // self.heads
        dims = [(self.hidden, self.hidden)] * 2 + [(self.hidden, kv_out)] * 2 + [(self.hidden, self.ffn)] * 3
        return self.layers * sum(r * (a + b) for a, b in dims)


@dataclass
class Plan:
    """The estimate, its parts, and what to change when it does not fit."""

    total_gib: float
    """Estimated peak GPU memory."""
    parts: dict[str, float]
    """GiB by component."""
    fits: bool
    """Whether it fits the GPU's memory (with 5% headroom)."""
    tokens_per_s: float
    """Expected training throughput."""
    hours: float
    """Expected time for the given number of tokens."""
    suggestions: list[str] = field(default_factory=list)
    """Settings that would fit, when it does not."""


def estimate_memory(shape: ModelShape, method: str, seq_len: int, batch: int, grad_checkpointing: bool = True,
                    lora_r: int = 16) -> dict[str, float]:
    """Peak memory by component, in GiB."""
    tokens = seq_len * batch
    linear = shape.layers * shape.linear_params_per_layer
    parts = {}
    if method == "qlora":  # nf4: half a byte, plus double-quantized absmax (≈ 1/64 byte); embeddings in bf16
        parts["weights"] = linear * 0.516 + shape.embedding_params * 2
    elif method == "lora":
        parts["weights"] = shape.params * 2
    else:  # fp32 master weights, fp32 grads, AdamW's two fp32 moments
        parts["weights"] = shape.params * 4
        parts["grads + optimizer"] = shape.params * 12
    if method in ("lora", "qlora"):  # fp32 adapter + grads; 8-bit AdamW for QLoRA, fp32 AdamW for LoRA
        parts["adapter + optimizer"] = shape.lora_params(lora_r) * (10 if method == "qlora" else 16)
    per_layer = tokens * shape.hidden * 34  # Korthikanti et al. activations per layer (bf16), flash/SDPA attention
    if grad_checkpointing:
        parts["activations"] = shape.layers * tokens * shape.hidden * 2 + per_layer
    else:
        parts["activations"] = shape.layers * per_layer
    parts["loss"] = min(tokens, LOSS_CHUNK) * shape.vocab * 10  # bf16 logits, fp32 copy, fp32 grad
    parts["workspace"] = WORKSPACE
    return {k: v / GIB for k, v in parts.items()}


def plan(shape: ModelShape, method: str, seq_len: int, batch: int, gpu_gib: float, grad_checkpointing: bool = True,
         lora_r: int = 16, train_tokens: int = 0, gpu_flops: float = DEFAULT_GPU_FLOPS) -> Plan:
    parts = estimate_memory(shape, method, seq_len, batch, grad_checkpointing, lora_r)
    total = sum(parts.values())
    weight_passes = 6 if method == "full" else 4
    flops = weight_passes * shape.params + 6 * shape.layers * shape.hidden * seq_len
    if grad_checkpointing:
        flops *= 4 / 3  # one more forward
    tps = EXPECTED_MFU.get(method, 0.3) * gpu_flops / flops
    fits = total <= gpu_gib * 0.95
    suggestions = [] if fits else _suggest(shape, method, seq_len, batch, gpu_gib, grad_checkpointing, lora_r)
    return Plan(round(total, 2), {k: round(v, 3) for k, v in parts.items()}, fits, round(tps, 1),
                round(train_tokens / tps / 3600, 2) if train_tokens else 0.0, suggestions)


def _suggest(shape, method, seq_len, batch, gpu_gib, checkpointing, lora_r) -> list[str]:
    """Each single change that would make it fit, cheapest first."""
    options = []
    if not checkpointing:
        options.append(("turn on gradient checkpointing", method, seq_len, batch, True))
    if batch > 1:
        options.append((f"batch_size {max(1, batch // 2)} with twice the grad_accum", method, seq_len,
                        max(1, batch // 2), checkpointing))
    for other in ("lora", "qlora"):
        if other != method and (method == "full" or other == "qlora"):
            options.append((f"method {other}", other, seq_len, batch, checkpointing))
    if seq_len > 256:
        options.append((f"seq_len {seq_len // 2}", method, seq_len // 2, batch, checkpointing))
    out = []
    for text, m, s, b, c in options:
        need = sum(estimate_memory(shape, m, s, b, c, lora_r).values())
        if need <= gpu_gib * 0.95:
            out.append(f"{text} (≈{need:.1f} GiB)")
    if method == "full":
        out.append("deepspeed zero3_offload across GPUs (weights and optimizer states leave the GPU)")
    return out or ["a GPU with more memory"]
