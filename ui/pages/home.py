"""The Home page: what is here (models, datasets, jobs by state), the last few jobs live, what this machine
has, and a one-click self-test that proves the whole path (queue → worker → model → progress → UI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil
from nicegui import ui

from app.queries import counts
from app.registry import list_models
from jobs import api
from jobs import status as st
from jobs.tasks.selftest import SelftestArgs
from ui import state
from ui.components.formatting import human_bytes
from ui.components.job_table import JobTable
from ui.components.job_widgets import STATUS_LABEL
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t


@dataclass
class Hardware:
    cpu_logical: int
    cpu_physical: int
    ram_total: int
    disk_free: int
    gpus: list[str]
    nvml: str


def _hardware(root: Path) -> Hardware:
    from engine.hardware import nvml_status, read_gpus  # NVML only; no torch

    gpus = [t("GPU {index}: {name}, {mem}", index=g.index, name=g.name, mem=human_bytes(g.mem_total))
            for g in read_gpus()]
    return Hardware(cpu_logical=os.cpu_count() or 0, cpu_physical=psutil.cpu_count(logical=False) or 0,
                    ram_total=psutil.virtual_memory().total, disk_free=psutil.disk_usage(str(root)).free,
                    gpus=gpus, nvml=nvml_status())


def _stat(label: str) -> ui.label:
    with ui.card().classes("min-w-36 items-center gap-0"):
        value = ui.label("0").classes("text-3xl font-bold")
        ui.label(t(label)).classes("text-sm opacity-70")
    return value


class HomeView:
    def __init__(self, root: Path):
        self.root = root
        with ui.row().classes("items-center w-full gap-4"):
            ui.label(t("What is here")).classes("text-lg font-medium")
            ui.space()
            ui.button(t("Run self-test"), icon="play_arrow", on_click=self.run_selftest).mark("run-selftest")
        with ui.row().classes("gap-4 items-stretch"):
            self.n_models = _stat("Models")
            self.n_datasets = _stat("Datasets")
            with ui.card().classes("min-w-72 gap-1"):
                ui.label(t("Jobs by status")).classes("text-sm opacity-70")
                self.job_counts = ui.row().classes("gap-2")
        ui.label(t("Recent jobs")).classes("text-lg font-medium")
        self.recent = JobTable(root, limit=5)
        ui.label(t("This machine")).classes("text-lg font-medium")
        self.hardware = ui.column().classes("gap-1")

    async def start(self) -> None:
        """First reads before the page is delivered; then the counts every two seconds."""
        await self.refresh_counts()
        await self.load_hardware()
        await self.recent.start()
        with self.hardware:
            ui.timer(2.0, self.refresh_counts)

    async def refresh_counts(self) -> None:
        c = await io_bound(counts, self.root)
        self.n_models.set_text(str(c.models))
        self.n_datasets.set_text(str(c.datasets))
        lines = [t("{label}: {n}", label=t(STATUS_LABEL[s]), n=c.jobs[s]) for s in (*st.ACTIVE, *st.FINAL)
                 if c.jobs.get(s)] or [t("No jobs yet.")]
        if lines != [el.text for el in self.job_counts.default_slot.children]:
            self.job_counts.clear()
            with self.job_counts:
                for line in lines:
                    ui.label(line)

    async def load_hardware(self) -> None:
        hw = await io_bound(_hardware, self.root)
        with self.hardware:
            ui.label(t("CPU: {logical} threads ({physical} cores)", logical=hw.cpu_logical, physical=hw.cpu_physical))
            ui.label(t("Memory: {ram}", ram=human_bytes(hw.ram_total)))
            ui.label(t("Free disk in the data dir: {free}", free=human_bytes(hw.disk_free)))
            for gpu in hw.gpus:
                ui.label(gpu)
            if not hw.gpus:
                ui.label(t("No NVIDIA GPU found")).classes("font-medium")
                if hw.nvml != "ok":
                    ui.label(hw.nvml).classes("text-xs opacity-60")

    async def run_selftest(self) -> None:
        models = await io_bound(list_models, self.root)
        if not models:
            ui.notify(t("No model is registered yet: set up the bundled model on the Models page first."),
                      type="warning")
            return
        default = SelftestArgs().model
        model = next((m for m in models if m.name == default), models[0])
        try:
            job = await io_bound(api.submit, self.root, "selftest", {"model": model.name}, model_id=model.id)
        except Exception as e:  # a queue that cannot be written: say why instead of failing silently
            ui.notify(t("Could not start the self-test: {error}", error=str(e)), type="negative")
            return
        ui.navigate.to(f"/jobs/{job.id}")


@ui.page("/")
async def home_page():
    with frame(t("Home")):
        await HomeView(state.root()).start()
