"""What the training benchmarks share: a random-init model of a given shape on disk, and a timed step loop.

Speed depends on shapes, not values, so random weights of a real shape are enough; never time on zeros.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import torch


def write_model(shape: dict, folder: Path) -> Path:
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(max_position_embeddings=4096, **shape),
                                     dtype=torch.bfloat16).save_pretrained(folder)
    return folder


def train_step(model, optimizer):
    """One optimizer step on a batch of token ids (labels = inputs); returns the loss."""

    def step(ids):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def our_train_step(model, optimizer, device: str):
    """One optimizer step through our fused loss (bf16 autocast on CUDA); returns the loss."""
    from engine.finetune.loss import causal_lm_loss

    def step(ids):
        positions = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            total, n = causal_lm_loss(model, {"input_ids": ids, "labels": ids, "position_ids": positions})
        (total / n).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(total / n)

    return step


def measure(make, path: Path, device: str, batch: int, seq: int, vocab: int, steps: int) -> dict:
    """Build a step with make(path, device), warm it up twice, then time `steps` steps on random tokens."""
    cuda = device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step = make(path, device)
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1)).to(device)
    first = step(ids)  # warm-up, and the loss we check is finite
    assert first == first and first > 0, f"bad loss {first}"
    step(ids)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(ids)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del step
    return {"tokens_per_s": batch * seq * steps / seconds, "peak_gib": peak, "first_loss": first}
