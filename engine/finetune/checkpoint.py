"""Checkpoints a run can resume from exactly: weights (adapter or full), optimizer, step, data position, RNG.

A checkpoint is written to a temporary folder and renamed when complete, so a kill -9 mid-write leaves the
previous checkpoint as the latest. Resuming restores the RNG states too, so dropout draws the same masks and
a resumed CPU run reproduces the uninterrupted run's losses.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

PREFIX = "step-"


@dataclass
class TrainState:
    """Where a run stands: enough to continue it."""

    step: int = 0
    """Optimizer steps taken."""
    epoch: int = 0
    """Current epoch (0-based)."""
    batch_in_epoch: int = 0
    """Micro-batches of this epoch already consumed (per process)."""
    tokens_seen: int = 0
    """Trained tokens so far (all processes)."""


def checkpoints_dir(output: Path) -> Path:
    return Path(output) / "checkpoints"


def latest_checkpoint(path: str | Path) -> Path | None:
    """The newest complete checkpoint in a run folder, its checkpoints folder, or the path itself."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    folder = checkpoints_dir(path) if (path / "checkpoints").is_dir() else path
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return max(done, key=lambda p: int(p.name[len(PREFIX):]), default=None)


def _rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output: Path, state: TrainState, model, optimizer, *, adapter: bool, rank: int = 0,
                    keep: int = 2, deepspeed_engine=None) -> Path:
    """Write step-N atomically; every process calls it (each saves its RNG; rank 0 the rest)."""
    import torch

    folder = checkpoints_dir(output)
    final = folder / f"{PREFIX}{state.step:07d}"
    tmp = folder / f"{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    if deepspeed_engine is not None:  # ZeRO shards its optimizer (and, at stage 3, weights) per process
        deepspeed_engine.save_checkpoint(str(tmp / "deepspeed"), tag="state")
    torch.save(_rng_state(), tmp / f"rng-{rank}.pt")
    if rank == 0:
        if deepspeed_engine is None:
            (model.save_pretrained(tmp / "adapter") if adapter else torch.save(model.state_dict(), tmp / "model.pt"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state)))
    _barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        done = sorted(p for p in folder.iterdir() if p.name.startswith(PREFIX) and not p.name.endswith(".tmp"))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load_state(checkpoint: Path) -> TrainState:
    return TrainState(**json.loads((Path(checkpoint) / "state.json").read_text()))


def restore(checkpoint: Path, model, optimizer, *, adapter: bool, rank: int = 0, deepspeed_engine=None) -> None:
    """Load weights (full runs; adapters are loaded with the model), optimizer and this process's RNG."""
    import torch

    checkpoint = Path(checkpoint)
    if deepspeed_engine is not None:
        deepspeed_engine.load_checkpoint(str(checkpoint / "deepspeed"), tag="state")
    else:
        if not adapter:
            model.load_state_dict(torch.load(checkpoint / "model.pt", map_location="cpu"))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=False))
    rng = checkpoint / f"rng-{rank}.pt"
    if rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=False))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
