"""Contamination of a stored evaluation run by a training dataset, and the score on the clean rest.

`check_run` reads a run's samples, finds which of their benchmark items share an n-gram with the dataset
(engine/eval/contamination.py), marks every sample `contaminated` (in its detail, with the overlapping n-gram),
and stores beside each full metric row the same metric over the clean items only (`acc` -> `acc_clean`) plus a
`contaminated_fraction` row per task — all in one transaction, so a reader sees either the old check or the new
one. Clean metrics are recomputed with the runner's own `score`, so CircularEval and pass@k stay correct; groups
(mmlu) are the item-weighted mean of their members' clean metrics, as their full scores are.

`check_tasks` answers the same question without a run: which share of a benchmark's items a dataset contains.
Torch-free: the web process may call these (the page queues a `contamination` job instead, the scan is long).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import select

from app.db import session
from app.errors import NotFound
from app.tables import Dataset, EvalResult, EvalRun, EvalSample
from engine.eval.contamination import DEFAULT_N, MIN_TOKENS, Report, find_contaminated, item_text
from engine.progress import Progress, no_progress

CLEAN_SUFFIX = "_clean"
FRACTION = "contaminated_fraction"
# An agent benchmark scores itself in its own loop; of its metrics, these are the share of items answered right
# (BFCL, GSM8K with Python, ToolTalk), which is what a stored sample's `correct` says. Per-call metrics
# (precision, action rates) need the loop's own records and get no clean row.
AGENT_ITEM_METRICS = ("accuracy", "answer_accuracy", "success_rate")


def resolve_dataset(root: Path, ref: str) -> tuple[str, str, int | None]:
    """(label, path, Dataset id) for a registered dataset (id or name) or a data file/folder path."""
    ref = str(ref).strip()
    if not ref:
        raise ValueError("dataset: name a registered dataset or a data file")
    with session(root) as s:
        row = s.get(Dataset, int(ref)) if ref.isdigit() else None
        row = row or s.exec(select(Dataset).where(Dataset.name == ref)).first()
        if row is not None:
            if not Path(row.path).exists():
                raise ValueError(f"dataset: {row.name}'s files are gone ({row.path})")
            return row.name, row.path, row.id
    path = Path(ref).expanduser()
    if path.exists():
        return path.name, str(path.resolve()), None
    raise ValueError(f"dataset: no registered dataset and no file or folder named {ref!r}")


def _tasks_of(names: str) -> dict:
    """Stored task name -> Task for a run's task list (a custom set's stored name is its Task's name)."""
    from engine.eval.tasks import expand, get_task

    found = {}
    for _, name in expand(names):
        task = get_task(name)
        found[task.name] = task
    return found


def _docs_by_id(task, split: str) -> dict[str, dict]:
    return {str(d.get("id", "")): d for d in task.docs(task.check_split(split))}


def _scan(items: dict[str, str], data: str, n: int, progress: Progress,
          cancel: threading.Event | None) -> Report:
    return find_contaminated(items, data, n=n, min_tokens=MIN_TOKENS, progress=progress, cancel=cancel)


def _as_runner_sample(row: EvalSample) -> dict:
    """A stored sample in the shape engine.eval.runner.score reads. A judged sample's `correct` is the judge's
    verdict; the rule-based metrics were scored on its `rule_correct`, so that is what they are rescored on."""
    correct = bool((row.detail or {}).get("rule_correct", row.correct))
    smp = {"doc_id": row.doc_id, "rotation": row.rotation, "correct": correct, "n": 1, "n_correct": int(correct)}
    smp.update({k: row.detail[k] for k in ("scores", "n", "n_correct") if k in (row.detail or {})})
    if row.outcome:
        smp["outcome"] = row.outcome
    return smp


def check_run(root: Path, run_id: int, dataset_ref: str, n: int = DEFAULT_N, progress: Progress = no_progress,
              cancel: threading.Event | None = None) -> dict:
    """Mark a run's samples contaminated or clean and store the clean-subset metrics; returns the summary."""
    from engine.eval.metrics import summarize
    from engine.eval.runner import TaskResult, aggregate_groups, score

    label, data, dataset_id = resolve_dataset(root, dataset_ref)
    with session(root) as s:
        run = s.get(EvalRun, run_id)
        if run is None:
            raise NotFound(f"no evaluation run {run_id}")
        rows = list(s.exec(select(EvalSample).where(EvalSample.run_id == run_id).order_by(EvalSample.id)).all())
        full = list(s.exec(select(EvalResult).where(EvalResult.run_id == run_id)).all())
    settings = run.settings or {}
    task_names = settings.get("tasks") or run.tasks
    tasks = _tasks_of(task_names)
    split, circular = settings.get("split", ""), bool(settings.get("circular", False))

    items: dict[str, str] = {}
    for task_name in dict.fromkeys(r.task for r in rows):
        if task_name not in tasks:
            raise ValueError(f"run {run_id}: its samples name task {task_name!r}, which is not in {task_names!r}")
        docs = _docs_by_id(tasks[task_name], split)
        for doc_id in dict.fromkeys(r.doc_id for r in rows if r.task == task_name):
            if doc_id not in docs:
                raise ValueError(f"run {run_id}: task {task_name} has no item {doc_id!r} in its data any more")
            items[f"{task_name}\x00{doc_id}"] = item_text(docs[doc_id])
    report = _scan(items, data, n, progress, cancel)

    full_by_task: dict[str, dict[str, EvalResult]] = {}
    for res in full:
        if not res.metric.endswith(CLEAN_SUFFIX) and res.metric != FRACTION:
            full_by_task.setdefault(res.task, {})[res.metric] = res
    summary: dict[str, dict] = {}
    member_results: list[TaskResult] = []
    new_rows: list[EvalResult] = []
    for task_name, task in tasks.items():
        task_rows = [r for r in rows if r.task == task_name]
        if not task_rows:
            continue
        dirty = {r.doc_id for r in task_rows if f"{task_name}\x00{r.doc_id}" in report.contaminated}
        docs = {r.doc_id for r in task_rows}
        clean_rows = [r for r in task_rows if r.doc_id not in dirty]
        clean = [_as_runner_sample(r) for r in clean_rows]
        if task.kind == "agent":
            clean_metrics = summarize({name: [float(r.correct) for r in clean_rows] for name in AGENT_ITEM_METRICS
                                       if name in full_by_task.get(task_name, {}) and clean_rows})
        else:
            clean_metrics = score(clean, circular) if clean else {}
        clean_metrics |= _judge_metrics(clean_rows)
        member_results.append(TaskResult(task_name, "", task.licence, clean_metrics))
        new_rows += _rows(task_name, full_by_task.get(task_name, {}), clean_metrics, len(dirty), len(docs))
        summary[task_name] = _summary(full_by_task.get(task_name, {}), clean_metrics, len(dirty), len(docs))
        summary[task_name]["too_short"] = sum(f"{task_name}\x00{d}" in report.too_short for d in docs)

    groups = _groups(task_names)
    for group, members in groups.items():
        parts = [m for m in member_results if m.task in members and m.metrics]
        dirty_n = sum(summary[m]["contaminated"] for m in members if m in summary)
        docs_n = sum(summary[m]["items"] for m in members if m in summary)
        if not docs_n:
            continue
        for part in parts:
            part.group = group
        clean_metrics = aggregate_groups(parts).get(group, {}) if parts else {}
        new_rows += _rows(group, full_by_task.get(group, {}), clean_metrics, dirty_n, docs_n)
        summary[group] = _summary(full_by_task.get(group, {}), clean_metrics, dirty_n, docs_n)

    with session(root) as s:  # one transaction: the marks and the clean rows together
        s.exec(delete(EvalResult).where(EvalResult.run_id == run_id,
                                        EvalResult.metric.like(f"%{CLEAN_SUFFIX}") | (EvalResult.metric == FRACTION)))
        for row in s.exec(select(EvalSample).where(EvalSample.run_id == run_id)).all():
            key = f"{row.task}\x00{row.doc_id}"
            detail = {k: v for k, v in (row.detail or {}).items() if k not in ("contaminated", "overlap")}
            detail["contaminated"] = key in report.contaminated
            if key in report.contaminated:
                detail["overlap"] = report.contaminated[key]
            row.detail = detail  # a new dict: the JSON column notices the change
            s.add(row)
        for res in new_rows:
            s.add(res)
        run = s.get(EvalRun, run_id)
        run.settings = {**(run.settings or {}), "contamination": {"dataset": label, "path": data, "n": n}}
        s.add(run)
    progress(fraction=1.0, message=f"contamination: {len(report.contaminated)} of {len(items)} items overlap "
                                   f"with {label}")
    return {"dataset": label, "dataset_id": dataset_id, "n": n, "tasks": summary}


def _judge_metrics(rows: list[EvalSample]) -> dict:
    """An LLM judge's metrics over these samples, as engine.eval.judge computes them: judge_accuracy (graded A),
    judge_invalid (the grading reply had no verdict) and win_rate (the pairwise score, both orders averaged)."""
    from engine.eval.metrics import summarize

    per_item: dict[str, list[float]] = {}
    graded = [r for r in rows if (r.detail or {}).get("judge")]
    if graded:
        per_item["judge_accuracy"] = [float(r.correct) for r in graded]
        per_item["judge_invalid"] = [float(bool(r.detail["judge"].get("invalid"))) for r in graded]
    paired = [float(r.detail["pairwise"]["score"]) for r in rows if (r.detail or {}).get("pairwise")]
    if paired:
        per_item["win_rate"] = paired
    return summarize(per_item) if per_item else {}


def _groups(task_names: str) -> dict[str, set[str]]:
    from engine.eval.tasks import expand

    groups: dict[str, set[str]] = {}
    for group, member in expand(task_names):
        if group != member:
            groups.setdefault(group, set()).add(member)
    return groups


def _rows(task: str, full: dict[str, EvalResult], clean: dict, dirty: int, total: int) -> list[EvalResult]:
    first = next(iter(full.values()), None)
    if first is None:  # the task has no stored metrics (its run stopped before it): nothing to stand beside
        return []
    common = {"run_id": first.run_id, "task": task, "settings_hash": first.settings_hash, "licence": first.licence}
    out = [EvalResult(metric=FRACTION, value=dirty / total, stderr=None, n=total, **common)]
    for name in full:
        if name in clean:
            m = clean[name]
            stderr = m.get("stderr")
            out.append(EvalResult(metric=name + CLEAN_SUFFIX, value=float(m["value"]),
                                  stderr=None if stderr is None or stderr != stderr else float(stderr),
                                  n=int(m.get("n", 0)), **common))
    return out


def _summary(full: dict[str, EvalResult], clean: dict, dirty: int, total: int) -> dict:
    return {"items": total, "contaminated": dirty, "fraction": dirty / total if total else 0.0,
            "metrics": {name: {"full": res.value, "clean": clean[name]["value"] if name in clean else None}
                        for name, res in full.items()}}


def check_tasks(tasks: str, dataset: str, n: int = DEFAULT_N, split: str = "", progress: Progress = no_progress,
                cancel: threading.Event | None = None, root: Path | None = None) -> dict:
    """Without a run: the share of each task's items that the dataset contains (dataset: a path, or a
    registered dataset when root is given)."""
    label, data = (resolve_dataset(root, dataset)[:2] if root is not None else (Path(dataset).name, dataset))
    tasks_by_name = _tasks_of(tasks)
    items = {f"{name}\x00{doc_id}": item_text(doc) for name, task in tasks_by_name.items()
             for doc_id, doc in _docs_by_id(task, split).items()}
    report = _scan(items, data, n, progress, cancel)
    summary = {}
    for name in tasks_by_name:
        keys = [k for k in items if k.startswith(f"{name}\x00")]
        dirty = [k.split("\x00", 1)[1] for k in keys if k in report.contaminated]
        summary[name] = {"items": len(keys), "contaminated": len(dirty),
                         "fraction": len(dirty) / len(keys) if keys else 0.0, "examples": dirty[:20]}
    return {"dataset": label, "n": n, "tasks": summary}


def clean_vs_full(root: Path, run_id: int) -> list[dict]:
    """The stored check of a run, for the page: per task and metric the full score, the clean one and the
    contaminated share of the task's items (empty when the run was never checked)."""
    with session(root) as s:
        rows = list(s.exec(select(EvalResult).where(EvalResult.run_id == run_id)
                           .order_by(EvalResult.task, EvalResult.metric)).all())
    by_key = {(r.task, r.metric): r for r in rows}
    out = []
    for r in rows:
        if r.metric.endswith(CLEAN_SUFFIX) or r.metric == FRACTION or (r.task, FRACTION) not in by_key:
            continue
        clean = by_key.get((r.task, r.metric + CLEAN_SUFFIX))
        fraction = by_key[(r.task, FRACTION)]
        out.append({"task": r.task, "metric": r.metric, "full": r.value, "n": r.n,
                    "clean": clean.value if clean else None, "clean_n": clean.n if clean else 0,
                    "contaminated": fraction.value, "contaminated_items": round(fraction.value * fraction.n),
                    "items": fraction.n})
    return out
