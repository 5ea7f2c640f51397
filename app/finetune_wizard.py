"""What the finetune wizard and run page ask for besides widgets: the dataset preview with its token-level mask,
the VRAM plan, the GPU's size, presets, and a run's checkpoints.

The preview tokenizes with the model's own tokenizer and chat template, which means transformers and so torch:
it runs in the worker process (app/worker_pool.py), never in the web process. The rest reads JSON and config
files or NVML and runs in the caller's thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from app import worker_pool

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "assets" / "finetune"


@dataclass
class DataPreview:
    """What the dataset step shows: format, row count, sample rows, and per-token trained/masked flags."""

    format: str = ""
    """Detected or given format."""
    rows: int = 0
    """Usable rows."""
    samples: list[list[tuple[str, bool]]] = field(default_factory=list)
    """For a few rows: (token text, trained?)."""
    error: str = ""
    """The problem, naming file, line and field."""


def preview_dataset(model_path: str, data: str, fmt: str = "auto", mapping: dict | None = None,
                    n_samples: int = 3, seq_len: int = 1024) -> DataPreview:
    """Read the dataset and tokenize a few rows with the model's template, in the worker process."""
    return worker_pool.run(tokenize_preview, model_path, data, fmt, mapping, n_samples, seq_len)


def tokenize_preview(model_path: str, data: str, fmt: str, mapping: dict | None, n_samples: int,
                     seq_len: int) -> DataPreview:
    """The preview itself; runs in the worker process (it imports transformers)."""
    from engine.finetune.data import DataError, load_examples

    try:
        fmt, examples = load_examples(data, fmt, mapping)
    except DataError as e:
        return DataPreview(error=str(e))
    from transformers import AutoTokenizer

    from engine.finetune.template import ensure_chat_template, preview, tokenize_text

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:  # not a model folder, or no tokenizer in it
        return DataPreview(format=fmt, rows=len(examples), error=f"{model_path}: no usable tokenizer: {e}")
    ensure_chat_template(tokenizer)
    samples = []
    for ex in examples[:n_samples]:
        if ex.messages:
            samples.append(preview(tokenizer, ex.messages, seq_len, ex.tools))
        else:  # continued pretraining: every token is trained
            samples.append([(tokenizer.decode([t]), True) for t in tokenize_text(tokenizer, ex.text)[:seq_len]])
    return DataPreview(format=fmt, rows=len(examples), samples=samples)


def load_presets() -> dict[str, dict]:
    """Saved wizard arguments by name (assets/finetune/*.json)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(PRESETS.glob("*.json"))}


def vram_plan(model_path: str, method: str, seq_len: int, batch: int, grad_checkpointing: bool, lora_r: int,
              gpu_gib: float, train_tokens: int):
    """The planner's estimate from the model's config.json alone (no weights, no torch)."""
    from engine.finetune.vram_planner import ModelShape, plan

    return plan(ModelShape.from_folder(model_path), method, seq_len, batch, gpu_gib, grad_checkpointing, lora_r,
                train_tokens)


def gpu_memory_gib() -> float:
    """The first GPU's memory, or 0 when there is none (NVML only, no torch)."""
    from engine.hardware import read_gpus

    try:
        gpus = read_gpus()
    except Exception:  # no driver: the planner then asks the user for a size
        return 0.0
    return gpus[0].mem_total / 2**30 if gpus else 0.0


def checkpoints(run_dir: Path) -> list[str]:
    """A run's saved checkpoints, newest name first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if (p / "state.json").is_file()), reverse=True)
