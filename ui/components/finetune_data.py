"""The wizard's blocking work, run off the event loop: dataset preview with the token-level mask view, the
VRAM plan, presets, and the finetune runs to compare. Engine imports happen inside these functions only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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


def load_presets() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(PRESETS.glob("*.json"))}


def preview_dataset(model_path: str, data: str, fmt: str = "auto", mapping: dict | None = None,
                    n_samples: int = 3, seq_len: int = 1024) -> DataPreview:
    from engine.finetune.data import DataError, load_examples

    try:
        fmt, examples = load_examples(data, fmt, mapping)
    except DataError as e:
        return DataPreview(error=str(e))
    from transformers import AutoTokenizer

    from engine.finetune.template import ensure_chat_template, preview, tokenize_text

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    ensure_chat_template(tokenizer)
    samples = []
    for ex in examples[:n_samples]:
        if ex.messages:
            samples.append(preview(tokenizer, ex.messages, seq_len))
        else:  # continued pretraining: every token is trained
            samples.append([(tokenizer.decode([t]), True) for t in tokenize_text(tokenizer, ex.text)[:seq_len]])
    return DataPreview(format=fmt, rows=len(examples), samples=samples)


def vram_plan(model_path: str, method: str, seq_len: int, batch: int, grad_checkpointing: bool, lora_r: int,
              gpu_gib: float, train_tokens: int):
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


def loss_curves(root: Path, job_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
    """job id -> [(step, loss)] for overlaying several runs."""
    from sqlmodel import select

    from app.db import session
    from app.tables import Metric

    with session(root) as s:
        rows = s.exec(select(Metric).where(Metric.job_id.in_(job_ids), Metric.name == "loss")
                      .order_by(Metric.step)).all()
    curves: dict[int, list[tuple[int, float]]] = {j: [] for j in job_ids}
    for m in rows:
        curves[m.job_id].append((m.step, m.value))
    return curves


def checkpoints(run_dir: Path) -> list[str]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if (p / "state.json").is_file()), reverse=True)
