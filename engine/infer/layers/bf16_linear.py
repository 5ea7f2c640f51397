"""bf16 linear layers through our streaming kernel for the small batches of decode, on CPUs with AVX512-BF16.

A decode step reads every weight once per token, so on the CPU its speed is how fast the weights stream from
memory. ATen's bf16 linear (oneDNN) streamed them at ~10 GB/s at 1-16 rows on a 2-core Xeon that reads ~24 GB/s;
engine/infer/cpu_kernels/linear_bf16.cpp streams the same weight, in place, at ~23 GB/s for one row and ~15 GB/s
for 16 (with AMX). Larger batches (prefill) go to ATen's AMX GEMM, over the same tensor: no second copy of any
weight. Used for dtype "auto" where that picked bf16; an explicit dtype "bfloat16" keeps the torch op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.infer import cpu_kernels
from engine.infer.layers.embed_head import LMHead


class Bf16KernelLinear(nn.Module):
    """A bf16 linear layer computed by cpu_kernels.linear_bf16 over the original layer's own weight and bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight = weight
        self.bias = bias
        self.max_rows = cpu_kernels.linear_bf16_max_rows()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.max_rows * self.in_features:
            # ATen's linear, called here rather than inside the op, so that a compiled graph keeps inductor's own
            # call to it (through the op a batch-16 step ran 2-3% slower).
            return F.linear(x, self.weight, self.bias)
        return cpu_kernels.linear_bf16(x, self.weight, self.bias)


def use_bf16_kernel(model: nn.Module) -> int:
    """Route the model's bf16 linear layers (the LM head too) through Bf16KernelLinear; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or child.weight.dtype != torch.bfloat16:
                continue
            kernel = Bf16KernelLinear(child.weight, child.bias)
            if isinstance(child, LMHead):
                child.kernel = kernel  # the head may share its weight with the embedding; both keep reading it
            else:
                setattr(parent, name, kernel)
            count += 1
    return count
