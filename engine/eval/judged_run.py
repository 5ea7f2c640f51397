"""An evaluation with an LLM judge, in phases that hold one model in memory at a time (as OpenCompass's infer and
eval stages do): the model answers every task; for pairwise, the other model answers the judged tasks; then the
judge grades and compares.

Every task is handed to `on_task` as soon as the model has answered it, before any judging, so a judge that
cannot be reached costs nothing already computed: the answers are stored (and in the response cache), the run
fails with an error naming the judge, and the next run takes the answers from the cache and only judges.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable

from engine.eval.backends import Backend
from engine.eval.cache import ResponseCache
from engine.eval.config import EvalConfig
from engine.eval.judge import Judge, describe, is_judged, judge_failure, protocol
from engine.eval.runner import Evaluator, TaskResult, aggregate_groups
from engine.progress import Cancelled, Progress, no_progress

OpenBackend = Callable[[str, str], Backend]
"""(model reference, role: "model", "against" or "judge") -> a backend ready to answer."""


def _close(backend: Backend) -> None:
    """End a backend's processes, and give its memory back before the next model loads."""
    getattr(backend, "close", lambda: None)()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _answers(cfg: EvalConfig, open_backend: OpenBackend, role: str, cache: ResponseCache, progress: Progress,
             cancel: threading.Event | None, on_task=None, only: set[str] | None = None) -> tuple[dict, str]:
    """One model's run (its backend lives only in this frame, so closing it frees it) and its identity."""
    backend = open_backend(cfg.model if role == "model" else cfg.against, role)
    try:
        return Evaluator(cfg, backend, cache, progress, cancel).run(on_task=on_task, only=only), backend.identity
    finally:
        _close(backend)


def evaluate(cfg: EvalConfig, open_backend: OpenBackend, cache: ResponseCache, progress: Progress = no_progress,
             cancel: threading.Event | None = None, on_task: Callable[[TaskResult], None] | None = None,
             on_judge: Callable[[dict], None] | None = None) -> dict:
    """Run cfg's tasks, then (when cfg.judge is set) judge the open ones. Returns {"tasks", "groups", "judge"}.

    on_task sees each task twice when it is judged: with the model's answers, then with the verdicts.
    on_judge sees the judge record (references, identities, exact prompts) once the judge is loaded.
    """
    outcome, _ = _answers(cfg, open_backend, "model", cache, progress, cancel, on_task)
    if not cfg.judge:
        return outcome
    judged = [r for r in outcome["tasks"] if r.source is not None and r.items and is_judged(r.source, cfg)]
    if not judged:
        return outcome
    others = _other_answers(cfg, open_backend, cache, progress, cancel, {r.task for r in judged}) \
        if cfg.against else {}
    record = {"judge": cfg.judge, "against": cfg.against, **protocol()}
    try:
        judge_backend = open_backend(cfg.judge, "judge")
    except Cancelled:
        raise
    except Exception as e:
        raise judge_failure(cfg.judge, None, e) from e
    try:
        record["judge_identity"] = judge_backend.identity
        if cfg.against:
            record["against_identity"] = others.pop("__identity__")
        if on_judge:
            on_judge(record)
        judge = Judge(judge_backend, describe(cfg.judge, judge_backend), cache, progress, cancel)
        for result in judged:  # Judge.ask turns a judge that stops answering into JudgeUnavailable
            _judge_task(judge, result, others.get(result.task))
            if on_task:
                on_task(result)
    finally:
        _close(judge_backend)
    outcome["groups"] = aggregate_groups(outcome["tasks"])
    outcome["judge"] = record
    return outcome


def _other_answers(cfg: EvalConfig, open_backend: OpenBackend, cache: ResponseCache, progress: Progress,
                   cancel: threading.Event | None, names: set[str]) -> dict:
    """The against-model's samples per judged task (same prompts, same settings), plus its identity."""
    progress(message=f"answers of {cfg.against} for the comparison")
    try:
        run, identity = _answers(cfg, open_backend, "against", cache, progress, cancel, only=names)
    except Cancelled:
        raise
    except Exception as e:
        raise RuntimeError(f"against: {cfg.against} could not answer: {type(e).__name__}: {e}. The model's "
                           "answers are stored and cached.") from e
    return {"__identity__": identity, **{r.task: r.samples for r in run["tasks"]}}


def _judge_task(judge: Judge, result: TaskResult, others: list[dict] | None) -> None:
    """Verdicts into the task's samples; the judge's metrics beside the rule-based ones (kept as they were)."""
    metrics = dict(result.metrics)
    metrics |= judge.grade(result.source, result.items, result.samples)
    if others is not None:
        metrics |= judge.compare(result.source, result.items, result.samples, others)
    result.metrics = metrics
