"""SiLU(gate) * up over the fused gate_up projection: the llama MLP's activation in one call."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.infer import cpu_kernels


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, -1)
    return F.silu(gate) * up


class SiluAndMul(nn.Module):
    def __init__(self):
        super().__init__()
        self._fn = silu_and_mul

    def use_compiled(self) -> None:
        """Swap in a torch.compile'd version (CUDA only: one fused kernel)."""
        self._fn = torch.compile(silu_and_mul, dynamic=True)

    def use_cpu_kernels(self) -> None:
        """Swap in the one-pass C++ kernel for eager fp32 steps on the CPU (cpu_kernels/norm_act.cpp)."""
        self._fn = cpu_kernels.eager_only(cpu_kernels.silu_and_mul, silu_and_mul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)
