"""Agent runs in the store: save a finished trace, list and rate runs, and turn good runs into an SFT dataset.

A run is one row with its whole trace as JSON (engine.agents.trace): the playground lists and rates rows and
shows a trace's steps, and the export writes the selected runs as OpenAI messages with `tool_calls` and the
`tools` they were offered — the `messages` format the finetune data loader reads — registered as a Dataset
whose `inputs` name the runs it came from, so a model trained on it can be traced back to them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from sqlmodel import select

from app.db import session
from app.tables import AgentRun, Dataset

RATINGS = range(0, 6)
"""0: not rated; 1 (bad) to 5 (good)."""


def save_run(root: Path, trace: dict, title: str = "") -> AgentRun:
    """Store a trace (Trace.to_dict()); a run still going is stored too and updated with update_run."""
    with session(root) as s:
        run = AgentRun(title=title or trace["question"][:80])
        _fill(run, trace)
        s.add(run)
    return run


def update_run(root: Path, run_id: int, trace: dict) -> AgentRun:
    with session(root) as s:
        run = _get(s, run_id)
        _fill(run, trace)
        s.add(run)
    return run


def _fill(run: AgentRun, trace: dict) -> None:
    run.question, run.loop, run.model = trace["question"], trace["loop"], trace.get("model", "")
    run.tools = [t["function"]["name"] for t in trace.get("tools", [])]
    run.status, run.answer = trace["status"], trace.get("answer") or ""
    run.steps = len(trace.get("steps", []))
    run.tokens = sum(step.get("tokens", 0) for step in trace.get("steps", []))
    run.trace = trace
    run.finished_at = trace.get("finished_at")


def _get(s, run_id: int) -> AgentRun:
    run = s.get(AgentRun, run_id)
    if run is None:
        raise LookupError(f"no agent run with id {run_id}")
    return run


def get_run(root: Path, run_id: int) -> AgentRun:
    with session(root) as s:
        return _get(s, run_id)


def list_runs(root: Path, limit: int = 100, min_rating: int = 0) -> list[AgentRun]:
    with session(root) as s:
        query = select(AgentRun).order_by(AgentRun.created_at.desc()).limit(limit)
        if min_rating:
            query = query.where(AgentRun.rating >= min_rating)
        return list(s.exec(query).all())


def rate_run(root: Path, run_id: int, rating: int) -> AgentRun:
    if rating not in RATINGS:
        raise ValueError(f"rating: must be 0 (none) or 1 (bad) to 5 (good), got {rating!r}")
    with session(root) as s:
        run = _get(s, run_id)
        run.rating = rating
        s.add(run)
    return run


def delete_run(root: Path, run_id: int) -> None:
    with session(root) as s:
        s.delete(_get(s, run_id))


def sft_record(run: AgentRun) -> dict:
    """One training row: the run as an OpenAI conversation and the tools it was offered."""
    from engine.agents.trace import Trace

    trace = Trace.from_dict(run.trace)
    return {"messages": trace.to_messages(), "tools": trace.tools}


def export_sft_dataset(root: Path, run_ids: list[int], name: str) -> Dataset:
    """Write the runs as a JSONL of {messages, tools} and register it as a Dataset with lineage to the runs.

    Only answered runs are exported: a run that stopped without an answer teaches the model nothing to finish.
    """
    if not run_ids:
        raise ValueError("pick at least one run to export")
    name = name.strip()
    if not name:
        raise ValueError("name: give the dataset a name")
    with session(root) as s:
        runs = [_get(s, run_id) for run_id in run_ids]
        if s.exec(select(Dataset).where(Dataset.name == name)).first() is not None:
            raise ValueError(f"name: a dataset called {name!r} already exists")
    unanswered = [r.id for r in runs if r.status != "answered"]
    if unanswered:
        raise ValueError(f"runs {unanswered} ended without an answer; export answered runs only")
    folder = root / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-').lower() or 'agent-runs'}.jsonl"
    if path.exists():
        path = path.with_name(f"{path.stem}-{int(time.time())}.jsonl")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for run in runs:
                f.write(json.dumps(sft_record(run), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        with session(root) as s:
            dataset = Dataset(
                name=name,
                path=str(path),
                format="messages",
                rows=len(runs),
                size_bytes=path.stat().st_size,
                recipe={"source": "agent_runs", "runs": run_ids},
                inputs=[f"agent_run:{run_id}" for run_id in run_ids],
            )
            s.add(dataset)
    except BaseException:
        path.unlink(missing_ok=True)  # no row, no file: a failed export leaves nothing half-made
        raise
    return dataset
