"""fp32 compute over fp16 weights on CPUs without native bf16: half the bytes a decode step reads.

Batch-1 decode reads every weight once per token, so on the CPU its speed is the memory's rate divided by the
weight bytes. A CPU without native bf16 math (AVX2 only) would otherwise run the model in fp32, reading twice
what llama.cpp reads from an F16 GGUF. The weight is kept as fp16 and multiplied with fp32 activations and fp32
accumulation: only the weights are rounded, to fp16's 11-bit significand, which holds every bf16 value in range
exactly. The multiply is our own kernel (engine/infer/cpu_kernels/linear_f16.cpp: it streams the weight at
decode and beats FBGEMM at prefill); where that could not be built, FBGEMM's fp16 GEMM (shipped in torch's CPU
build, AVX2) over its packed copy of the weight. Used for dtype "auto" on such CPUs; dtype "float32" keeps
exact fp32 (bit-for-bit parity with HF).
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn

from engine.infer import cpu_kernels
from engine.infer.layers.embed_head import LMHead

log = logging.getLogger(__name__)

FP16_MAX = 65504.0


@torch.library.custom_op("inkstone::fp16_weight_linear", mutates_args=())
def fp16_weight_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [..., in] fp32 times the packed fp16 weight, plus bias [out] -> [..., out] fp32. A custom op so that a
    compiled graph calls it as it is (the packed weight is an opaque handle the compiler cannot look into)."""
    return torch.ops.aten.fbgemm_linear_fp16_weight(x, packed, bias)


@fp16_weight_linear.register_fake
def _(x, packed, bias):
    return x.new_empty(*x.shape[:-1], bias.shape[0])


@functools.cache
def fp16_weights_supported() -> bool:
    """Whether this torch build and CPU run FBGEMM's fp16 GEMM (it needs AVX2)."""
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        return False
    try:
        packed = torch.ops.aten.fbgemm_pack_gemm_matrix_fp16(torch.ones(8, 8))
        out = torch.ops.aten.fbgemm_linear_fp16_weight(torch.ones(1, 8), packed, torch.zeros(8))
    except (RuntimeError, AttributeError):
        return False
    return bool(torch.allclose(out, torch.full((1, 8), 8.0)))


class Fp16WeightLinear(nn.Module):
    """A linear layer whose weight lives only as fp16 (packed for our kernel, else in FBGEMM's packed layout);
    fp32 in and out."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight_bytes = weight.numel() * 2
        """Bytes of fp16 weight a forward reads."""
        self.native = cpu_kernels.available()
        with torch.no_grad():
            if self.native:
                fp16 = cpu_kernels.pack_f16w(weight)
            else:
                fp16 = torch.ops.aten.fbgemm_pack_gemm_matrix_fp16(weight.detach().float().contiguous())
                if bias is None:  # FBGEMM's op always adds one
                    bias = torch.zeros(self.out_features)
            bias = None if bias is None else bias.detach().float().clone()
        self.register_buffer("fp16", fp16, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return cpu_kernels.linear_f16w(x, self.fp16, self.bias, self.out_features)
        return fp16_weight_linear(x, self.fp16, self.bias)


def use_fp16_weights(model: nn.Module) -> int:
    """Replace the model's fp32 linear layers (the LM head too) by Fp16WeightLinear; returns how many. A layer
    with a weight beyond fp16's range stays fp32."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or child.weight.dtype != torch.float32:
                continue
            if child.weight.abs().max() > FP16_MAX:
                log.info("%s keeps fp32 weights: some exceed fp16's range", name)
                continue
            fp16 = Fp16WeightLinear(child.weight, child.bias)
            if isinstance(child, LMHead):
                child.kernel = fp16  # the head may share its weight with the embedding, which stays fp32
            else:
                setattr(parent, name, fp16)
            count += 1
    return count
