"""The Chat page's model bar: which model each pane talks to, and the state of that model's server.

A server is a `serve` job. Its row says whether it is queued, waiting for a GPU or running, and its result
carries the URL from the moment it starts; the model is loaded once /health answers. The bar polls both
every second, so a pane knows whether it can send, and a job that stays queued gets a word on why: only the
job consumer starts servers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nicegui import ui

from app.chat_client import ModelClient
from app.registry import display_name
from app.tables import Job
from jobs import api
from jobs import status as st
from jobs.servers import ensure_server, stop_server
from ui.components.offload import io_bound
from ui.i18n import t

QUEUED_HINT_AFTER_S = 5.0
DEVICES = {"auto": "auto", "cpu": "cpu"}


def latest_serve_job(root: Path, model: str) -> Job | None:
    """The model's active serve job, else its newest one (to say why it ended)."""
    jobs = api.list_jobs(root, 200, "serve")
    mine = [j for j in jobs if j.params.get("model") == model or j.result.get("model") == model]
    return next((j for j in mine if j.status in st.ACTIVE), mine[0] if mine else None)


class ServerStatus(ui.row):
    """Chip, detail line and Start/Stop for one model; `url` is set while its server answers."""

    def __init__(self, root: Path, pane: int, device: Callable[[], str]):
        super().__init__()
        self.root, self.pane, self.device = root, pane, device
        self.model = ""
        self.url: str | None = None
        self.classes("items-center gap-2 no-wrap")
        with self:
            self.chip = ui.chip(t("No server"), color="grey-6", text_color="white").props("dense square")
            self.chip.mark(f"server-status-{pane}")
            self.spinner = ui.spinner(size="sm")
            self.start_btn = ui.button(t("Start"), icon="play_arrow", on_click=self.start).props("dense flat")
            self.start_btn.mark(f"server-start-{pane}")
            self.stop_btn = ui.button(t("Stop"), icon="stop", on_click=self.stop).props("dense flat color=negative")
            self.stop_btn.mark(f"server-stop-{pane}")
            self.detail = ui.label().classes("text-xs opacity-70 max-w-md")
        self._show(None, ready=False)

    async def poll(self) -> None:
        if not self.model:
            self.url = None
            self._show(None, ready=False)
            return
        job = await io_bound(latest_serve_job, self.root, self.model)
        url = job.result.get("url") if job is not None and job.status == st.RUNNING else None
        ready = bool(url) and not job.cancel_requested and await ModelClient(url).ready()
        self.url = url if ready else None
        self._show(job, ready)

    def _show(self, job: Job | None, ready: bool) -> None:
        active = job is not None and job.status in st.ACTIVE
        detail = ""
        if job is None or not active and job.status != st.FAILED:
            label, color = t("No server"), "grey-6"
        elif job.status == st.FAILED:
            label, color = t("Failed"), "negative"
            lines = job.error.strip().splitlines()
            detail = lines[-1] if lines else job.message
        elif job.cancel_requested:
            label, color = t("Stopping"), "grey-8"
        elif job.status == st.QUEUED:
            label, color = t("Queued"), "grey-6"
            if time.time() - job.created_at > QUEUED_HINT_AFTER_S:
                detail = t("No job consumer has picked it up. Chat needs the job consumer: start Inkstone with "
                           "its launcher (inkstone ui).")
        elif job.status == st.WAITING:
            label, color = t("Waiting for a GPU"), "amber-8"
        elif ready:
            label, color = t("Ready"), "positive"
        else:
            label, color = t("Starting"), "primary"
            detail = f"{job.progress:.0%} {job.message}".strip()
        self.chip.set_text(label)
        if self.chip.props.get("color") != color:
            self.chip.props(f"color={color}")
        self.detail.set_text(detail)
        self.spinner.set_visibility(active and not ready and job.status != st.QUEUED)
        self.start_btn.set_visibility(bool(self.model) and not active)
        self.stop_btn.set_visibility(active and not job.cancel_requested)

    async def start(self) -> None:
        try:
            job = await io_bound(ensure_server, self.root, self.model, self.device())
        except Exception as e:  # bad arguments or a queue that cannot be written: say which
            ui.notify(t("Could not start the server: {error}", error=str(e)), type="negative")
            return
        ui.notify(t("Starting the server of {model} (job #{id}).", model=self.model, id=job.id))
        await self.poll()

    async def stop(self) -> None:
        try:
            await io_bound(stop_server, self.root, self.model)
        except (LookupError, ValueError) as e:  # it ended meanwhile
            ui.notify(str(e), type="warning")
        await self.poll()


class ModelBar:
    """One picker and server status per pane; the second shows when side by side is on."""

    def __init__(self, root: Path, names: list[str], chosen: list[str], locked: bool,
                 on_change: Callable[[], Awaitable[None]]):
        self.on_change = on_change
        options = {n: display_name(n) for n in names}
        for name in chosen:  # a resumed session's model may have been removed since
            options.setdefault(name, t("{name} (not registered)", name=display_name(name)))
        self.selects: list[ui.select] = []
        self.statuses: list[ServerStatus] = []
        with ui.column().classes("w-full gap-1"):
            with ui.row().classes("w-full items-center gap-4"):
                self.side = ui.switch(t("Side by side"), value=len(chosen) > 1, on_change=self._changed)
                self.side.mark("side-by-side")
                if locked:  # panes hold their own history: the layout is fixed once the chat has turns
                    self.side.disable()
                    with self.side:
                        ui.tooltip(t("Start a new chat to change the layout."))
                self.device = ui.select(DEVICES, value="auto", label=t("Device")).classes("w-28").mark("device")
                with self.device:
                    ui.tooltip(t("Where a server you start runs: auto uses a GPU when there is one."))
            for pane in (0, 1):
                with ui.row().classes("w-full items-center gap-2") as row:
                    value = chosen[pane] if pane < len(chosen) else (names[0] if names else None)
                    select = ui.select(options, value=value, label=t("Model {n}", n=pane + 1),
                                       on_change=self._changed).classes("w-64").mark(f"model-{pane}")
                    self.selects.append(select)
                    self.statuses.append(ServerStatus(root, pane, lambda: self.device.value))
                if pane == 1:
                    self.row_b = row
        self._sync()

    @property
    def models(self) -> list[str]:
        count = 2 if self.side.value else 1
        return [s.value or "" for s in self.selects[:count]]

    def _sync(self) -> None:
        self.row_b.set_visibility(self.side.value)
        for status, model in zip(self.statuses, self.models + [""], strict=False):
            status.model = model

    async def _changed(self) -> None:
        self._sync()
        await self.poll()
        await self.on_change()

    async def poll(self) -> None:
        for status in self.statuses:
            await status.poll()
