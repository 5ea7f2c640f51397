"""One job, live: the component any page embeds to follow a job it started, and the body of /jobs/{id}.

Embedded (evaluation, agents, the finetune run page) it shows what a user watches while waiting: status,
progress bar with ETA, the latest message, a live metrics chart, the log tail and Cancel/Retry. With
`details=True` (the Jobs page) it adds timings, lineage, error, arguments, result and the machine's telemetry
over the job's span. One timer, owned by the component, polls the rows each second and stops once the job is
over and its last lines are shown; deleting the component deletes the timer with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from nicegui import ui

from app.queries import Lineage, job_lineage
from app.tables import Job
from jobs import api
from jobs import status as st
from ui.components.formatting import human_duration, human_time
from ui.components.job_widgets import JobActions, JobProgress, LogTail, MetricChart, StatusBadge, job_duration
from ui.components.offload import io_bound
from ui.i18n import t

POLL_S = 1.0


def _json_block(title: str, data: dict) -> None:
    ui.label(t(title)).classes("font-medium")
    ui.code(json.dumps(data, indent=2, ensure_ascii=False, default=str), language="json").classes("w-full")


class JobView(ui.column):
    """Build it, then `await view.start()`: the first read happens before the page is delivered."""

    def __init__(self, root: Path, job: Job, *, details: bool = False, follow_retry: bool = False,
                 log_height: str = "h-80"):
        super().__init__()
        self.root, self.job, self.show_details, self.lineage = root, job, details, Lineage()
        self.timer: ui.timer | None = None
        self.classes("w-full gap-4").mark(f"job-view-{job.id}")
        with self:
            with ui.row().classes("items-center gap-3 w-full"):
                ui.label(f"#{job.id} {t(job.title) or job.kind}").classes("text-xl font-medium")
                ui.label(job.kind).classes("opacity-60")
                self.badge = StatusBadge(job)
                ui.space()
                self.actions = JobActions(root, job, follow_retry=follow_retry, on_change=self.tick)
            with ui.card().classes("w-full gap-2"):
                self.progress = JobProgress(job)
                self.message = ui.label().classes("break-words").mark("job-message")
                self.times = ui.label().classes("text-sm opacity-70")
                self.times.set_visibility(details)
            self.details_box = ui.column().classes("w-full gap-4")  # filled by the first tick
            with ui.card().classes("w-full"):
                ui.label(t("Metrics")).classes("font-medium")
                self.no_metrics = ui.label(t("No metrics recorded yet.")).classes("text-sm opacity-60")
                self.chart = MetricChart(root, job.id).classes("w-full h-72").mark("metric-chart")
            with ui.card().classes("w-full"):
                ui.label(t("Log")).classes("font-medium")
                self.log = LogTail(api.log_path(root, job.id))
                self.log.classes(replace=f"w-full {log_height} text-xs font-mono")

    async def start(self) -> None:
        """First read now; then poll each second until the job is over."""
        await self.tick()
        if self.job.status not in st.FINAL:
            with self:
                self.timer = ui.timer(POLL_S, self.tick)

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
        error_lines = job.error.strip().splitlines()
        self.message.set_text(error_lines[-1] if job.status == st.FAILED and error_lines and not self.show_details
                              else job.message)
        self.times.set_text(t("Created {created} · started {started} · finished {finished} · took {took}",
                              created=human_time(job.created_at), started=human_time(job.started_at),
                              finished=human_time(job.finished_at), took=human_duration(job_duration(job))))
        await self.chart.poll()
        self.chart.set_visibility(bool(self.chart.series_names))
        self.no_metrics.set_visibility(not self.chart.series_names)
        final = job.status in st.FINAL
        await self.log.poll(final=final)
        if self.show_details:
            await self._update_details(status_changed)
        if final and self.timer:  # everything it will ever write is in: stop polling
            self.timer.deactivate()

    async def _update_details(self, status_changed: bool) -> None:
        lineage = await io_bound(job_lineage, self.root, self.job)
        if not self.details_box.default_slot.children:
            self.lineage = lineage
            with self.details_box:
                self.details()
        elif status_changed or lineage != self.lineage:
            self.lineage = lineage
            self.details.refresh()

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
