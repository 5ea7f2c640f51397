"""SiLU(gate) * up over the fused gate_up projection: the llama MLP's activation in one call."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)
