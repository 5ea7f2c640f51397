"""RMSNorm with the residual add fused in, computed exactly as HF llama does (fp32 statistics).

Fusing the add saves a pass over the hidden states per sub-layer; keeping HF's arithmetic keeps greedy output
token-for-token identical to transformers in fp32.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.infer import cpu_kernels


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    residual = residual + x
    return rms_norm(residual, weight, eps), residual


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self._norm = rms_norm
        self._add_norm = add_rms_norm

    def use_compiled(self) -> None:
        """Swap in torch.compile'd versions (CUDA only: one fused kernel instead of five)."""
        self._norm = torch.compile(rms_norm, dynamic=True)
        self._add_norm = torch.compile(add_rms_norm, dynamic=True)

    def use_cpu_kernels(self) -> None:
        """Swap in the one-pass C++ kernels for eager fp32 steps on the CPU (cpu_kernels/norm_act.cpp)."""
        self._norm = cpu_kernels.eager_only(cpu_kernels.rms_norm, rms_norm)
        self._add_norm = cpu_kernels.eager_only(cpu_kernels.add_rms_norm, add_rms_norm)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is None:
            return self._norm(x, self.weight, self.eps)
        return self._add_norm(x, residual, self.weight, self.eps)
