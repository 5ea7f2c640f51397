"""Linear layers whose weights come from several checkpoint tensors stacked along the output dimension.

q/k/v (and gate/up) read the same input, so one matmul over the stacked weight replaces three (two) launches;
the checkpoint still stores them apart, so each part is copied into its slice at load time.
"""

from __future__ import annotations

import torch
from torch import nn


class MergedLinear(nn.Linear):
    def __init__(self, in_features: int, part_sizes: dict[str, int], bias: bool, dtype=None, device=None):
        super().__init__(in_features, sum(part_sizes.values()), bias=bias, dtype=dtype, device=device)
        self.part_slices: dict[str, slice] = {}
        start = 0
        for name, size in part_sizes.items():
            self.part_slices[name] = slice(start, start + size)
            start += size

    @torch.no_grad()
    def load_part(self, part: str, kind: str, tensor: torch.Tensor) -> None:
        """Copy one checkpoint tensor (kind "weight" or "bias") into its slice of the stacked parameter."""
        target = getattr(self, kind)[self.part_slices[part]]
        if target.shape != tensor.shape:
            raise ValueError(f"{part} {kind}: checkpoint shape {tuple(tensor.shape)}, expected {tuple(target.shape)}")
        target.copy_(tensor)
