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


# ---- eval in the loop: the base model and the result on the same tasks ----------------------------------------

EVAL_TASKS = ["arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa", "mmlu", "gsm8k", "math500",
              "humaneval", "mbpp"]


def eval_task_choices() -> dict[str, str]:
    """Task name -> "name — licence" for the wizard's picker: the core tasks, then each MMLU subject (no torch)."""
    from engine.eval.tasks import builtin_tasks

    licences = {task.name: task.licence for task in builtin_tasks()}
    licences["mmlu"] = licences.get("mmlu_anatomy", "")
    names = [n for n in EVAL_TASKS if n in licences] + sorted(n for n in licences if n.startswith("mmlu_"))
    return {n: f"{n} — {licences[n]}" if licences[n] else n for n in names}


def _side_state(side: str, finetune_status: str, job) -> str:
    """pending, running, done or the eval job's failure status; for an eval not queued yet: after-training (the
    result's, while the run trains) or not-run (the run ended without it)."""
    if job is None:
        if finetune_status in ("succeeded", "failed", "cancelled", "interrupted"):
            return "not-run"
        return "after-training" if side == "result" else "pending"
    if job.status in ("queued", "waiting"):
        return "pending"
    if job.status == "succeeded":
        return "done"
    return job.status  # running, failed, cancelled, interrupted


def before_after(root: Path, job_id: int) -> dict:
    """A finetune's evaluations side by side: each side's eval job, run and state, and one row per task and
    metric with base, result, their difference and its standard error (fractions; the page shows points).

    Rows fill in task by task as the eval jobs store them; a side with no number yet has None there.
    """
    from sqlmodel import select

    from app import evals
    from app.db import session
    from app.tables import EvalRun, Job

    with session(root) as s:
        job = s.get(Job, job_id)
        recorded = ((job.result or {}).get("evals") or {}) if job else {}
        sides = {}
        for side in ("base", "result"):
            eval_job_id = recorded.get(f"{side}_job")
            eval_job = s.get(Job, eval_job_id) if eval_job_id else None
            run = s.exec(select(EvalRun).where(EvalRun.job_id == eval_job_id)).first() if eval_job_id else None
            state = _side_state(side, job.status if job else "", eval_job)
            sides[side] = {"job_id": eval_job_id, "run_id": run.id if run else None, "state": state,
                           "model": recorded.get(f"{side}_model", "")}
    base_run, result_run = sides["base"]["run_id"], sides["result"]["run_id"]
    rows: dict[tuple[str, str], dict] = {}
    if base_run and result_run:
        for r in evals.compare(root, base_run, result_run):
            rows[(r["task"], r["metric"])] = {"task": r["task"], "metric": r["metric"], "base": r["a"],
                                              "result": r["b"], "delta": r["delta"], "stderr": r["stderr"],
                                              "same_settings": r["same_settings"]}
    for side, run_id in (("base", base_run), ("result", result_run)):
        for res in evals.results(root, [run_id]) if run_id else []:
            row = rows.setdefault((res.task, res.metric), {"task": res.task, "metric": res.metric, "base": None,
                                                           "result": None, "delta": None, "stderr": None,
                                                           "same_settings": True})
            row[side] = res.value
    return {"tasks": recorded.get("tasks", ""), "settings_hash": recorded.get("settings_hash", ""),
            "sides": sides, "rows": [rows[k] for k in sorted(rows)]}
