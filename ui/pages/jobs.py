"""The Jobs pages: every job live in one table (/jobs), and one job in full (/jobs/{id}).

The detail page is where a user watches a long run: progress, metrics, log and the machine's telemetry over
the job's time span, and where they walk its lineage (model, dataset, the job it retried, what it produced).
One timer polls the rows each second and stops once the job is over and its last lines are shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nicegui import ui
from sqlmodel import select

from app.db import session
from app.tables import Dataset, Job, Model
from jobs import api
from jobs import status as st
from ui import state
from ui.components.formatting import human_duration, human_time
from ui.components.job_table import JobTable
from ui.components.job_widgets import (
    JobActions,
    JobProgress,
    LogTail,
    MetricChart,
    StatusBadge,
    find_job,
    job_duration,
)
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t

LIMIT = 100


def _kinds_seen(root: Path) -> list[str]:
    with session(root) as s:
        return list(s.exec(select(Job.kind).distinct().order_by(Job.kind)).all())


@ui.page("/jobs")
async def jobs_page():
    root = state.root()
    with frame(t("Jobs")):
        kinds = await io_bound(_kinds_seen, root)
        with ui.row().classes("items-center gap-4"):
            kind = ui.select({"": t("All kinds"), **{k: k for k in kinds}}, value="", label=t("Kind"))
            kind.classes("w-56").mark("kind-filter")
            ui.label(t("The latest {n} jobs, updated every second.", n=LIMIT)).classes("text-sm opacity-60")
        table = JobTable(root, limit=LIMIT)
        kind.on_value_change(lambda e: table.set_kind(e.value))
        await table.start()


@dataclass
class Lineage:
    model: str = ""
    dataset: str = ""
    retried_as: list[int] = field(default_factory=list)
    produced_models: list[str] = field(default_factory=list)


def _lineage(root: Path, job: Job) -> Lineage:
    with session(root) as s:
        model = s.get(Model, job.model_id) if job.model_id else None
        dataset = s.get(Dataset, job.dataset_id) if job.dataset_id else None
        return Lineage(
            model=model.name if model else "",
            dataset=dataset.name if dataset else "",
            retried_as=list(s.exec(select(Job.id).where(Job.retry_of == job.id).order_by(Job.id)).all()),
            produced_models=list(s.exec(select(Model.name).where(Model.job_id == job.id)).all()),
        )


def _json_block(title: str, data: dict) -> None:
    ui.label(t(title)).classes("font-medium")
    ui.code(json.dumps(data, indent=2, ensure_ascii=False, default=str), language="json").classes("w-full")


class JobView:
    def __init__(self, root: Path, job: Job):
        self.root, self.job, self.lineage = root, job, Lineage()
        with ui.row().classes("items-center gap-3 w-full"):
            ui.label(f"#{job.id} {t(job.title) or job.kind}").classes("text-xl font-medium")
            ui.label(job.kind).classes("opacity-60")
            self.badge = StatusBadge(job)
            ui.space()
            self.actions = JobActions(root, job, follow_retry=True, on_change=self.tick)
        with ui.card().classes("w-full gap-2"):
            self.progress = JobProgress(job)
            self.message = ui.label().classes("break-words")
            self.times = ui.label().classes("text-sm opacity-70")
        self.details_box = ui.column().classes("w-full gap-4")  # filled by the first tick
        with ui.card().classes("w-full"):
            ui.label(t("Metrics")).classes("font-medium")
            self.no_metrics = ui.label(t("No metrics recorded yet.")).classes("text-sm opacity-60")
            self.chart = MetricChart(root, job.id).classes("w-full h-72").mark("metric-chart")
        with ui.card().classes("w-full"):
            ui.label(t("Log")).classes("font-medium")
            self.log = LogTail(api.log_path(root, job.id))
        self.timer: ui.timer | None = None

    async def start(self) -> None:
        """First read before the page is delivered; then poll each second until the job is over."""
        await self.tick()
        if self.job.status not in st.FINAL:
            with self.details_box:
                self.timer = ui.timer(1.0, self.tick)

    async def tick(self) -> None:
        try:
            job = await io_bound(api.get_job, self.root, self.job.id)
        except LookupError:  # deleted from under us: keep what is shown, stop polling
            if self.timer:
                self.timer.deactivate()
            return
        status_changed = job.status != self.job.status or job.result != self.job.result
        self.job = job
        self.badge.show(job)
        self.progress.show(job)
        self.actions.show(job)
        self.message.set_text(job.message)
        self.times.set_text(t("Created {created} · started {started} · finished {finished} · took {took}",
                              created=human_time(job.created_at), started=human_time(job.started_at),
                              finished=human_time(job.finished_at), took=human_duration(job_duration(job))))
        await self.chart.poll()
        self.chart.set_visibility(bool(self.chart.series_names))
        self.no_metrics.set_visibility(not self.chart.series_names)
        final = job.status in st.FINAL
        await self.log.poll(final=final)
        lineage = await io_bound(_lineage, self.root, job)
        if not self.details_box.default_slot.children:
            self.lineage = lineage
            with self.details_box:
                self.details()
        elif status_changed or lineage != self.lineage:
            self.lineage = lineage
            self.details.refresh()
        if final and self.timer:  # everything it will ever write is in: stop polling
            self.timer.deactivate()

    @ui.refreshable_method
    def details(self) -> None:
        job, lin = self.job, self.lineage
        with ui.card().classes("w-full gap-2"):
            ui.label(t("Lineage")).classes("font-medium")
            with ui.row().classes("gap-6 items-center"):
                if lin.model:
                    ui.link(t("Model: {name}", name=lin.model), "/models")
                if lin.dataset:
                    ui.label(t("Dataset: {name}", name=lin.dataset))
                if job.retry_of:
                    ui.link(t("Retry of job #{id}", id=job.retry_of), f"/jobs/{job.retry_of}")
                for new_id in lin.retried_as:
                    ui.link(t("Retried as job #{id}", id=new_id), f"/jobs/{new_id}")
                for name in lin.produced_models:
                    ui.link(t("Produced model: {name}", name=name), "/models")
                if not (lin.model or lin.dataset or job.retry_of or lin.retried_as or lin.produced_models):
                    ui.label(t("No linked models, datasets or jobs.")).classes("text-sm opacity-60")
        if job.error:
            with ui.card().classes("w-full gap-2 border-l-4 border-negative"):
                ui.label(t("Error")).classes("font-medium text-negative")
                ui.code(job.error, language=None).classes("w-full").mark("job-error")
        with ui.row().classes("w-full gap-4 no-wrap items-start"):
            with ui.card().classes("flex-1 min-w-0"):
                _json_block("Arguments", job.params)
            if job.result:
                with ui.card().classes("flex-1 min-w-0"):
                    _json_block("Result", job.result)
        with ui.card().classes("w-full"):
            ui.label(t("Machine during this job")).classes("font-medium")
            if job.started_at is None:
                ui.label(t("Telemetry appears once the job starts.")).classes("text-sm opacity-60")
            else:
                from ui.components.telemetry_chart import telemetry_chart

                telemetry_chart(self.root, job.started_at, job.finished_at)


@ui.page("/jobs/{job_id}")
async def job_page(job_id: str):
    root = state.root()
    with frame(t("Job")):
        job = await find_job(root, job_id)
        if job is None:
            ui.label(t("There is no job with id {id}.", id=job_id)).classes("text-lg")
            ui.link(t("Back to all jobs"), "/jobs")
            return
        await JobView(root, job).start()
