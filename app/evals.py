"""Evaluation results in the store: runs, metric rows, per-item samples, the response cache, and the views the
Evaluate page and the CLI need (OpenCompass-shaped table, leaderboard, run-to-run comparison, sample browser).

Plain functions over SQLite, torch-free: the web process calls them. Results of one task are written in one
transaction, so a run killed half-way keeps every finished task and nothing half-written.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from sqlalchemy import delete, func
from sqlmodel import select

from app.db import session
from app.errors import NotFound
from app.tables import EvalCacheEntry, EvalResult, EvalRun, EvalSample, Model

# Per-sample fields kept beside the columns: think length, the program and its sandbox output, pass@k counts, PPL
# scores, an LLM judge's verdict and reply (`judge`), pairwise verdicts against another run's answers (`pairwise`),
# a judge reply that gave no verdict (`judge_invalid`), the rule-based check the judge overrode, and an agent
# benchmark's small per-item trace (tool calls and observations, why it was wrong).
DETAIL_KEYS = ("think_len", "program", "stdout", "stderr", "n", "n_correct", "scores", "judge", "pairwise",
               "judge_invalid", "rule_correct", "trace")


class SqliteResponseCache:
    """The runner's response cache in the app database: keyed by model identity + prompt + settings (hashed)."""

    def __init__(self, root: Path):
        self.root = root

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        with session(self.root) as s:
            for first in range(0, len(keys), 500):
                chunk = keys[first:first + 500]
                for row in s.exec(select(EvalCacheEntry).where(EvalCacheEntry.key.in_(chunk))).all():
                    found[row.key] = row.value
        return found

    def put_many(self, values: dict[str, dict]) -> None:
        with session(self.root) as s:
            for key, value in values.items():
                s.merge(EvalCacheEntry(key=key, value=value))


def start_run(root: Path, *, model_ref: str, tasks: str, mode: str, settings: dict, settings_hash: str,
              job_id: int | None = None, model_id: int | None = None, export_id: int | None = None,
              dataset_id: int | None = None) -> EvalRun:
    """The run of a job: a retried job's run is reused, so its finished tasks are not duplicated."""
    with session(root) as s:
        if job_id is not None:
            found = s.exec(select(EvalRun).where(EvalRun.job_id == job_id)).first()
            if found:
                found.status = "running"
                s.add(found)
                return found
        run = EvalRun(model_ref=model_ref, model_id=model_id, export_id=export_id, dataset_id=dataset_id,
                      job_id=job_id, tasks=tasks, mode=mode, settings=settings, settings_hash=settings_hash)
        s.add(run)
        s.flush()
        return run


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def save_task(root: Path, run_id: int, task: str, licence: str, metrics: dict, samples: list[dict],
              settings_hash: str) -> None:
    """Replace one task's metric rows and samples in one transaction."""
    with session(root) as s:
        s.exec(delete(EvalResult).where(EvalResult.run_id == run_id, EvalResult.task == task))
        s.exec(delete(EvalSample).where(EvalSample.run_id == run_id, EvalSample.task == task))
        for name, m in metrics.items():
            s.add(EvalResult(run_id=run_id, task=task, metric=name, value=float(m["value"]),
                             stderr=_finite(m.get("stderr")), n=int(m.get("n", 0)), settings_hash=settings_hash,
                             licence=licence))
        for smp in samples:
            detail = {k: smp[k] for k in DETAIL_KEYS if k in smp}
            s.add(EvalSample(run_id=run_id, task=task, doc_id=smp.get("doc_id", ""), rotation=smp.get("rotation", 0),
                             prompt=smp.get("prompt", ""), answer=smp.get("answer", ""),
                             extracted=smp.get("extracted", ""), gold=smp.get("gold", ""),
                             correct=bool(smp.get("correct")), logprobs=smp.get("logprobs", []),
                             outcome=smp.get("outcome", ""), detail=detail))


def finish_run(root: Path, run_id: int, status: str) -> None:
    with session(root) as s:
        run = s.get(EvalRun, run_id)
        run.status, run.finished_at = status, time.time()
        s.add(run)


# ---- views ---------------------------------------------------------------------------------------------------

def list_runs(root: Path, limit: int = 100) -> list[EvalRun]:
    with session(root) as s:
        return list(s.exec(select(EvalRun).order_by(EvalRun.id.desc()).limit(limit)).all())


def get_run(root: Path, run_id: int) -> EvalRun:
    with session(root) as s:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise NotFound(f"no evaluation run {run_id}")
        return run


def run_label(run: EvalRun) -> str:
    return f"#{run.id} {Path(run.model_ref).name or run.model_ref}"


def results(root: Path, run_ids: list[int] | None = None) -> list[EvalResult]:
    with session(root) as s:
        q = select(EvalResult).order_by(EvalResult.run_id, EvalResult.task, EvalResult.metric)
        if run_ids is not None:
            q = q.where(EvalResult.run_id.in_(run_ids))
        return list(s.exec(q).all())


def results_table(root: Path, run_ids: list[int]) -> tuple[list[str], list[dict]]:
    """OpenCompass's summary shape: one row per dataset, settings hash and metric; one column per run's model."""
    runs = {r.id: r for r in (get_run(root, i) for i in run_ids)}
    columns = [run_label(runs[i]) for i in run_ids]
    rows: dict[tuple, dict] = {}
    for res in results(root, run_ids):
        run = runs[res.run_id]
        key = (res.task, res.settings_hash, res.metric, run.mode)
        row = rows.setdefault(key, {"dataset": res.task, "version": res.settings_hash, "metric": res.metric,
                                    "mode": run.mode})
        row[run_label(run)] = round(100 * res.value, 2)
    return columns, list(rows.values())


def leaderboard(root: Path, task: str, metric: str) -> list[dict]:
    """The best finished result per model for one task and metric, best first."""
    with session(root) as s:
        q = (select(EvalResult, EvalRun).join(EvalRun, EvalResult.run_id == EvalRun.id)
             .where(EvalResult.task == task, EvalResult.metric == metric, EvalRun.status == "done"))
        best: dict[str, dict] = {}
        for res, run in s.exec(q).all():
            name = run.model_ref
            if run.model_id is not None:
                model = s.get(Model, run.model_id)
                name = model.name if model else name
            if name not in best or res.value > best[name]["value"]:
                best[name] = {"model": name, "value": res.value, "stderr": res.stderr, "n": res.n, "run_id": run.id,
                              "settings_hash": res.settings_hash, "mode": run.mode}
    return sorted(best.values(), key=lambda r: -r["value"])


def compare(root: Path, run_a: int, run_b: int) -> list[dict]:
    """Task by task and metric by metric: a, b, b - a and the standard error of that difference."""
    a = {(r.task, r.metric): r for r in results(root, [run_a])}
    b = {(r.task, r.metric): r for r in results(root, [run_b])}
    rows = []
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        se = None
        if ra.stderr is not None and rb.stderr is not None:
            se = math.sqrt(ra.stderr ** 2 + rb.stderr ** 2)
        rows.append({"task": key[0], "metric": key[1], "a": ra.value, "b": rb.value, "delta": rb.value - ra.value,
                     "stderr": se, "same_settings": ra.settings_hash == rb.settings_hash})
    return rows


def samples(root: Path, run_id: int, task: str = "", wrong_only: bool = False, search: str = "",
            limit: int = 200, contamination: str = "") -> list[EvalSample]:
    """A run's samples, filtered; contamination "contaminated" or "clean" keeps the items a contamination check
    marked so (an unchecked run has neither)."""
    if contamination not in ("", "contaminated", "clean"):
        raise ValueError(f"contamination: must be contaminated, clean or empty, got {contamination!r}")
    with session(root) as s:
        q = select(EvalSample).where(EvalSample.run_id == run_id)
        if task:
            q = q.where(EvalSample.task == task)
        if wrong_only:
            q = q.where(EvalSample.correct == False)  # noqa: E712 (SQL expression)
        if contamination:  # SQLite's json_extract gives a JSON true/false as 1/0
            flag = func.json_extract(EvalSample.detail, "$.contaminated")
            q = q.where(flag == (1 if contamination == "contaminated" else 0))
        if search:
            like = f"%{search}%"
            q = q.where(EvalSample.prompt.like(like) | EvalSample.answer.like(like) | EvalSample.gold.like(like))
        return list(s.exec(q.order_by(EvalSample.id).limit(limit)).all())
