"""Learning-rate schedules: linear warmup, then cosine, linear or constant, as a multiplier of the peak LR.

A pure function of the step, so a resumed run (even one given more epochs) just rebuilds the scheduler at its
step instead of depending on a saved scheduler state.
"""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer, total: int, warmup_ratio: float, kind: str, start_step: int = 0):
    """A LambdaLR already positioned at start_step."""
    from torch.optim.lr_scheduler import LambdaLR

    warmup = round(total * warmup_ratio)
    scheduler = LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, kind))
    for _ in range(start_step):
        scheduler.step()
    return scheduler
