"""A live table of jobs, used by the Jobs page (all of them, filtered by kind) and Home (the last few).

Rows are real elements kept by job id and updated in place on a timer: a new job gets a new row at the
top, a changed one changes only its text and props, so nothing flickers and each row's buttons are plain
Python handlers.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app.tables import Job
from jobs import api
from jobs import status as st
from ui.components.formatting import human_duration, human_time
from ui.components.job_widgets import JobActions, JobProgress, StatusBadge, job_duration
from ui.components.offload import io_bound
from ui.i18n import t

COLUMNS = ("ID", "Job", "Status", "Progress", "Created", "Duration", "Message", "")


def _cell() -> ui.element:
    return ui.element("td").classes("align-middle")


def _message(job: Job) -> str:
    """A failed job's last error line says more than its last progress message."""
    error_lines = job.error.strip().splitlines()
    if job.status == st.FAILED and error_lines:
        return error_lines[-1]
    return job.message


class _JobRow:
    def __init__(self, root: Path, job: Job, on_change):
        self.tr = ui.element("tr").mark(f"job-row-{job.id}")
        with self.tr:
            with _cell():
                ui.link(f"#{job.id}", f"/jobs/{job.id}")
            with _cell(), ui.column().classes("gap-0"):
                ui.link(t(job.title) or job.kind, f"/jobs/{job.id}").classes("font-medium")
                ui.label(job.kind).classes("text-xs opacity-60")
            with _cell():
                self.badge = StatusBadge(job)
            with _cell().classes("min-w-48"):
                self.progress = JobProgress(job)
            with _cell():
                ui.label(human_time(job.created_at)).classes("whitespace-nowrap")
            with _cell():
                self.duration = ui.label().classes("whitespace-nowrap")
            with _cell().classes("max-w-md"):
                self.message = ui.label().classes("text-sm break-words")
            with _cell():
                self.actions = JobActions(root, job, dense=True, on_change=on_change)
        self.show(job)

    def show(self, job: Job) -> None:
        self.badge.show(job)
        self.progress.show(job)
        self.actions.show(job)
        self.duration.set_text(human_duration(job_duration(job)))
        self.message.set_text(_message(job))


class JobTable:
    """Build it, then `await start()`: the first rows are read before the page is delivered, then a timer
    keeps them live."""

    def __init__(self, root: Path, *, limit: int = 100, kind: str | None = None, interval: float = 1.0):
        self.root, self.limit, self.kind, self.interval = root, limit, kind, interval
        self.rows: dict[int, _JobRow] = {}
        self.box = ui.column().classes("w-full gap-2")
        with self.box:
            with ui.element("q-markup-table").props("flat bordered dense wrap-cells").classes("w-full"):
                with ui.element("thead"), ui.element("tr"):
                    for label in COLUMNS:
                        with ui.element("th").classes("text-left"):
                            ui.label(t(label) if label else "")
                self.body = ui.element("tbody")
            self.empty = ui.label(t("No jobs yet.")).classes("opacity-70")

    async def start(self) -> None:
        await self.refresh()
        with self.box:
            ui.timer(self.interval, self.refresh)

    async def set_kind(self, kind: str | None) -> None:
        self.kind = kind or None
        await self.refresh()

    async def refresh(self) -> None:
        jobs = await io_bound(api.list_jobs, self.root, self.limit, self.kind)
        wanted = {job.id for job in jobs}
        for job_id in [i for i in self.rows if i not in wanted]:
            self.body.remove(self.rows.pop(job_id).tr)
        for index, job in enumerate(jobs):  # newest first, as list_jobs returns them
            row = self.rows.get(job.id)
            if row is None:
                with self.body:
                    row = self.rows[job.id] = _JobRow(self.root, job, self.refresh)
            else:
                row.show(job)
            if self.body.default_slot.children.index(row.tr) != index:
                row.tr.move(target_index=index)
        self.empty.set_visibility(not jobs)
