"""The Export page's quant-damage table: each exported GGUF type's benchmark scores beside the HF model's.

An export job asked to "evaluate each quant" records the `eval` jobs it started in its result
(`{"evals": [{"quant": "hf" | type, "job_id": …}]}`); each of those jobs writes an EvalRun. This joins them
back into one table per export job — task, metric, the HF score, then each type's score and its difference
from the HF score in points — so a user sees what a quant costs as a number. Runs still queued or running
show their state instead of a score. Plain data assembly here (no torch); the page renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nicegui import ui

from app import evals
from app.tables import Job
from jobs import api
from jobs import status as st
from ui.components.job_widgets import STATUS_LABEL
from ui.i18n import t

EXPORT_JOBS_COMPARED = 5
"""The most recent export jobs with evaluations that get a table."""


@dataclass
class QuantComparison:
    export_job: Job
    columns: list[tuple[str, int]]
    """(quant, eval job id): "hf" first, then each exported type in export order."""
    states: dict[str, str]
    """quant -> the eval job's status (a score shows once its run stored one)."""
    rows: list[dict] = field(default_factory=list)
    """{"task", "metric", "scores": {quant: value in [0, 1]}}, in task then metric order."""


def _wanted_tasks(tasks: str) -> set[str]:
    return {name.strip() for name in tasks.split(",") if name.strip()}


def quant_comparisons(root: Path, limit: int = EXPORT_JOBS_COMPARED) -> list[QuantComparison]:
    """One comparison per recent export job that started evaluations, newest first."""
    exports = [j for j in api.list_jobs(root, 50, "export_gguf") if (j.result or {}).get("evals")][:limit]
    if not exports:
        return []
    job_ids = {e["job_id"] for j in exports for e in j.result["evals"]}
    runs = {r.job_id: r for r in evals.list_runs(root, 1000) if r.job_id in job_ids}
    results = evals.results(root, [r.id for r in runs.values()]) if runs else []
    by_run: dict[int, list] = {}
    for res in results:
        by_run.setdefault(res.run_id, []).append(res)
    out = []
    for job in exports:
        entries = job.result["evals"]
        wanted = _wanted_tasks(job.params.get("eval_tasks", ""))
        states, table = {}, {}
        for entry in entries:
            quant, eval_job = entry["quant"], entry["job_id"]
            try:
                states[quant] = api.get_job(root, eval_job).status
            except Exception:  # the job row was deleted since
                states[quant] = st.FAILED
            run = runs.get(eval_job)
            rows = by_run.get(run.id, []) if run else []
            shown = [r for r in rows if r.task in wanted] or rows  # groups (mmlu) rather than 57 subjects
            for res in shown:
                table.setdefault((res.task, res.metric), {})[quant] = res.value
        comparison = QuantComparison(job, [(e["quant"], e["job_id"]) for e in entries], states)
        comparison.rows = [{"task": task, "metric": metric, "scores": scores}
                           for (task, metric), scores in sorted(table.items())]
        out.append(comparison)
    return out


def points(value: float) -> str:
    return f"{100 * value:.1f}"


def delta_points(value: float, reference: float) -> str:
    """The difference in points, signed: what the quant gained (+) or lost (−) against the HF model."""
    d = round(100 * (value - reference), 1)
    return "±0.0" if d == 0 else f"{d:+.1f}".replace("-", "−")


def _state(status: str) -> str:
    return t(STATUS_LABEL.get(status, status))


def render_comparison(c: QuantComparison) -> None:
    job = c.export_job
    with ui.column().classes("w-full gap-1").mark(f"quant-evals-{job.id}"):
        with ui.row().classes("items-center gap-2"):
            ui.link(f"#{job.id}", f"/jobs/{job.id}")
            ui.label(t("{model}: {tasks}, {limit} questions per task, {mode} mode",
                       model=job.params.get("model", ""), tasks=job.params.get("eval_tasks", ""),
                       limit=job.params.get("eval_limit", 50) or t("all"),
                       mode=job.params.get("eval_mode", "ppl"))).classes("text-sm")
        with ui.element("q-markup-table").props("flat bordered dense").classes("w-full"):
            with ui.element("thead"), ui.element("tr"):
                for text in (t("Task"), t("Metric")):
                    with ui.element("th").classes("text-left"):
                        ui.label(text)
                for quant, eval_job in c.columns:
                    label = t("HF model") if quant == "hf" else quant.upper()
                    with ui.element("th").props(f"colspan={1 if quant == 'hf' else 2}").classes("text-left"):
                        ui.link(label, f"/jobs/{eval_job}")
            with ui.element("tbody"):
                if not c.rows:
                    with ui.element("tr"), ui.element("td").props(f"colspan={2 * len(c.columns) + 1}"):
                        ui.label(t("No scores yet: the evaluation jobs are {states}.", states=", ".join(
                            sorted({_state(s) for s in c.states.values()})))).classes("opacity-70")
                for row in c.rows:
                    _row(c, row)


def _row(c: QuantComparison, row: dict) -> None:
    reference = row["scores"].get("hf")
    with ui.element("tr").mark(f"quant-eval-{c.export_job.id}-{row['task']}-{row['metric']}"):
        for text in (row["task"], row["metric"]):
            with ui.element("td"):
                ui.label(text)
        for quant, _ in c.columns:
            value = row["scores"].get(quant)
            with ui.element("td"):  # no score: the job's state says why (queued, running, failed), else a dash
                ui.label(points(value) if value is not None else
                         "—" if c.states[quant] == st.SUCCEEDED else _state(c.states[quant]))
            if quant == "hf":
                continue
            with ui.element("td"):
                if value is not None and reference is not None:
                    text = delta_points(value, reference)
                    ui.label(text).classes("font-medium " + ("text-negative" if text.startswith("−") else ""))
                else:
                    ui.label("—")
