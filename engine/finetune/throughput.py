"""Per-step speed and memory numbers: tokens/s, model FLOPs utilization (MFU) and peak memory.

MFU counts 6·N FLOPs per token for a full finetune (forward 2N, backward 4N) and 4·N with a frozen base
(no weight gradients), plus the attention term, against the GPU's dense bf16 peak; recomputation from
gradient checkpointing is not counted, as is the convention. Unknown GPUs and the CPU report no MFU.
"""

from __future__ import annotations

import resource
import sys

# Dense bf16 tensor-core peaks (FLOP/s) by name fragment.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12,
              "RTX 4090": 165e12, "RTX 3090": 71e12, "A6000": 155e12, "V100": 125e12}


def peak_flops(device: str) -> float:
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return 0.0
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS.items() if k in name), 0.0)


def flops_per_token(n_params: int, n_layers: int, hidden: int, seq_len: int, full: bool) -> float:
    weight_passes = 6 if full else 4
    attention = 6 * n_layers * hidden * seq_len  # QK^T and AV, forward and backward, causal half counted
    return weight_passes * n_params + attention


def peak_memory_gib(device: str) -> float:
    """Peak allocated on the GPU, or the process's peak resident memory on the CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20
