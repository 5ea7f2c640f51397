"""The pieces every page that shows a job reuses: status badge, progress bar with ETA, cancel/retry buttons,
a live metric chart and a following log view.

Each widget is built once and then handed fresh rows (`show(job)`, `poll()`), changing only what changed, so
a view refreshed every second neither flickers nor resends what the browser already has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nicegui import ui

from app.tables import Job
from jobs import api
from jobs import status as st
from ui.components.formatting import human_duration
from ui.components.offload import io_bound
from ui.i18n import t

STATUS_COLOR = {st.QUEUED: "grey-6", st.WAITING: "amber-8", st.RUNNING: "primary", st.SUCCEEDED: "positive",
                st.FAILED: "negative", st.CANCELLED: "grey-8", st.INTERRUPTED: "orange-8"}
STATUS_LABEL = {st.QUEUED: "Queued", st.WAITING: "Waiting for a GPU", st.RUNNING: "Running",
                st.SUCCEEDED: "Succeeded", st.FAILED: "Failed", st.CANCELLED: "Cancelled",
                st.INTERRUPTED: "Interrupted"}
RETRYABLE = (st.FAILED, st.CANCELLED, st.INTERRUPTED)
LOG_TAIL_BYTES = 20_000


def job_duration(job: Job) -> float | None:
    if job.started_at is None:
        return None
    return (job.finished_at or time.time()) - job.started_at


def eta_text(job: Job) -> str:
    if job.status == st.RUNNING and job.eta_s is not None:
        return t("ETA {eta}", eta=human_duration(job.eta_s))
    return ""


def _set_color(element: ui.element, color: str) -> None:
    if element.props.get("color") != color:
        element.props(f"color={color}")


class StatusBadge(ui.badge):
    def __init__(self, job: Job):
        super().__init__()
        self.show(job)

    def show(self, job: Job) -> None:
        self.set_text(t(STATUS_LABEL.get(job.status, job.status)))
        _set_color(self, STATUS_COLOR.get(job.status, "grey-6"))


class JobProgress(ui.column):
    """A bar with the percentage on it and the ETA under it."""

    def __init__(self, job: Job):
        super().__init__()
        self.classes("gap-0 w-full min-w-40")
        with self:
            self.bar = ui.linear_progress(value=0, show_value=False, size="18px").props("rounded instant-feedback")
            with self.bar:
                self.pct = ui.label().classes("absolute-center text-xs text-white").style(
                    "text-shadow: 0 0 3px rgba(0, 0, 0, .7)")  # readable on the empty track and the fill
            self.eta = ui.label().classes("text-xs opacity-70")
        self.show(job)

    def show(self, job: Job) -> None:
        self.bar.set_value(round(job.progress, 4))
        self.pct.set_text(f"{job.progress:.0%}")
        _set_color(self.bar, STATUS_COLOR.get(job.status, "primary"))
        self.eta.set_text(eta_text(job))
        self.eta.set_visibility(bool(self.eta.text))


class JobActions(ui.row):
    """Cancel (while active) and Retry (once failed, cancelled or interrupted); errors come back as notices."""

    def __init__(self, root: Path, job: Job, *, dense: bool = False, follow_retry: bool = False,
                 on_change: Callable[[], Awaitable[None] | None] | None = None):
        super().__init__()
        self.classes("gap-1 no-wrap")
        self.root, self.job_id, self.follow_retry, self.on_change = root, job.id, follow_retry, on_change
        with self:
            self.cancel_btn = ui.button(None if dense else t("Cancel"), icon="stop", on_click=self._cancel)
            self.cancel_btn.props("flat dense color=negative").mark(f"cancel-{job.id}")
            self.retry_btn = ui.button(None if dense else t("Retry"), icon="replay", on_click=self._retry)
            self.retry_btn.props("flat dense color=primary").mark(f"retry-{job.id}")
            if dense:
                with self.cancel_btn:
                    ui.tooltip(t("Cancel"))
                with self.retry_btn:
                    ui.tooltip(t("Retry"))
        self.show(job)

    def show(self, job: Job) -> None:
        self.cancel_btn.set_visibility(job.status in st.ACTIVE and not job.cancel_requested)
        self.retry_btn.set_visibility(job.status in RETRYABLE)

    async def _changed(self) -> None:
        if self.on_change is not None:
            result = self.on_change()
            if result is not None:
                await result

    async def _cancel(self) -> None:
        try:
            job = await io_bound(api.cancel, self.root, self.job_id)
        except (LookupError, ValueError) as e:
            ui.notify(str(e), type="warning")
            return
        ui.notify(t("Job #{id} cancelled", id=job.id) if job.status == st.CANCELLED
                  else t("Asked job #{id} to stop", id=job.id))
        self.show(job)
        await self._changed()

    async def _retry(self) -> None:
        try:
            new = await io_bound(api.retry, self.root, self.job_id)
        except Exception as e:  # bad state (ValueError) or a queue that cannot be written: say which
            ui.notify(t("Could not retry: {error}", error=str(e)), type="negative")
            return
        ui.notify(t("Retrying as job #{id}", id=new.id), type="positive")
        if self.follow_retry:
            ui.navigate.to(f"/jobs/{new.id}")
        await self._changed()


class MetricChart(ui.echart):
    """One line per metric name over step; each poll fetches only rows newer than the last one seen."""

    def __init__(self, root: Path, job_id: int):
        super().__init__({
            "animation": False,
            "tooltip": {"trigger": "axis"},
            "legend": {"type": "scroll", "top": 0},
            "grid": {"left": 56, "right": 24, "top": 40, "bottom": 40},
            "xAxis": {"type": "value", "name": t("step"), "minInterval": 1},
            "yAxis": {"type": "value", "scale": True},
            "dataZoom": [{"type": "inside"}],
            "series": [],
        })
        self.root, self.job_id, self.last_id = root, job_id, 0
        self._index: dict[str, int] = {}  # metric name -> its series (options copies lists, so go through it)

    @property
    def series_names(self) -> list[str]:
        return list(self._index)

    async def poll(self) -> None:
        rows = await io_bound(api.job_metrics, self.root, self.job_id, self.last_id)
        rows = [m for m in rows if m.id > self.last_id]  # a poll that overlapped this one may have drawn them
        if not rows:
            return
        series = self.options["series"]
        for m in rows:
            if m.name not in self._index:
                self._index[m.name] = len(series)
                series.append({"name": m.name, "type": "line", "showSymbol": False, "data": []})
            series[self._index[m.name]]["data"].append([m.step, m.value])  # observed: pushes itself
        self.last_id = rows[-1].id


def _read_new(path: Path, offset: int | None) -> tuple[bytes, int]:
    """Bytes appended since offset (the last LOG_TAIL_BYTES on the first read), and the new offset."""
    if not path.exists():
        return b"", offset or 0
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if offset is None or size < offset:  # first read, or the file was rewritten
            offset = max(0, size - LOG_TAIL_BYTES)
            f.seek(offset)
            data = f.read()
            if offset > 0:  # started mid-file: drop the cut first line
                data = data.partition(b"\n")[2]
            return data, size
        f.seek(offset)
        data = f.read()
        return data, offset + len(data)


class LogTail(ui.log):
    """Follows a log file; ui.log appends lines without resending history and keeps itself scrolled down."""

    def __init__(self, path: Path, max_lines: int = 2000):
        super().__init__(max_lines)
        self.classes("w-full h-80 text-xs font-mono")
        self.path, self.offset, self._partial = path, None, b""
        self._lock = asyncio.Lock()  # overlapping polls would read the same bytes twice

    async def poll(self, *, final: bool = False) -> None:
        """Push complete lines; a line still being written waits for its newline unless the job is over."""
        async with self._lock:
            data, self.offset = await io_bound(_read_new, self.path, self.offset)
        data = self._partial + data
        if final:
            self._partial = b""
        else:
            data, _, self._partial = data.rpartition(b"\n")
        if data:
            self.push(data.decode("utf-8", errors="replace"))


async def find_job(root: Path, job_id: str) -> Job | None:
    """The job a URL names, or None for a malformed or unknown id (pages say so instead of failing)."""
    if not job_id.isdigit():
        return None
    try:
        return await io_bound(api.get_job, root, int(job_id))
    except LookupError:
        return None
