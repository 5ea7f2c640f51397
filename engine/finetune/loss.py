"""Causal-LM loss computed only where labels are trained, with the vocabulary projection done in chunks.

Two wins over `model(labels=…)`: the head runs only on trained positions (often a minority in SFT), and
logits for at most `chunk` positions exist at a time (recomputed in the backward pass), so a 128k-vocab head
never materializes a (tokens × vocab) fp32 tensor. Returns the summed loss and the token count, so gradient
accumulation can normalize by all the tokens of an optimizer step, not per micro-batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.finetune.template import IGNORE

# Recomputing the head in the backward pass only pays when the logits would be big (64 MiB of fp32 and up).
RECOMPUTE_ABOVE = 2**24


def _head_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return nn.functional.cross_entropy(logits, targets, reduction="sum")


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def causal_lm_loss(model: nn.Module, batch: dict, chunk: int = 512,
                   recompute: bool = True) -> tuple[torch.Tensor, int]:
    """(summed token loss, number of trained tokens) for one micro-batch on the model's device."""
    decoder, head = _parts(model)
    hidden = decoder(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                     use_cache=False).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    hidden = hidden[:, :-1][keep]
    targets = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    recompute = recompute and targets.numel() * head.weight.shape[0] >= RECOMPUTE_ABOVE
    for start in range(0, targets.numel(), chunk):
        h, y = hidden[start:start + chunk], targets[start:start + chunk]
        if recompute and torch.is_grad_enabled():
            total = total + checkpoint(_head_loss, head, h, y, use_reentrant=False)
        else:
            total = total + _head_loss(head, h, y)
    if targets.numel() == 0:  # keep the graph connected so every process still takes part in the backward
        total = total + hidden.sum() * 0.0
    return total, int(targets.numel())


class LossModule(nn.Module):
    """Wraps a model so DDP and DeepSpeed see one forward that returns the loss (their hooks need that)."""

    def __init__(self, model: nn.Module, recompute: bool = True):
        super().__init__()
        self.model = model
        self.recompute = recompute

    def forward(self, input_ids, labels, position_ids, normalizer):
        total, _ = causal_lm_loss(self.model, {"input_ids": input_ids, "labels": labels,
                                               "position_ids": position_ids}, recompute=self.recompute)
        return total / normalizer
