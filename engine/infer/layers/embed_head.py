"""Token embedding and the LM head that computes logits only for the rows that need them.

In a step of mixed prefill and decode only each sequence's last position is sampled, so projecting every
hidden state onto the vocabulary (the largest matmul of a small model) would mostly be wasted.
"""

from __future__ import annotations

import torch
from torch import nn


class LMHead(nn.Linear):
    def __init__(self, hidden_size: int, vocab_size: int, bias: bool = False, dtype=None, device=None):
        super().__init__(hidden_size, vocab_size, bias=bias, dtype=dtype, device=device)
        self.kernel: nn.Module | None = None
        """A module that computes this head instead, when set: an fp16-weight copy (layers/fp16_weights.py) or
        the bf16 streaming kernel over this weight (layers/bf16_linear.py)."""

    def forward(self, hidden: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if rows is not None:
            hidden = hidden.index_select(0, rows)
        if self.kernel is not None:
            return self.kernel(hidden).float()
        return super().forward(hidden).float()


def tie(head: LMHead, embedding: nn.Embedding) -> None:
    """Share one weight between input embedding and output projection (tie_word_embeddings)."""
    head.weight = embedding.weight
