"""The Export page: turn a registered model (and optionally a LoRA adapter) into verified GGUF files.

The form submits an `export_gguf` job (the same arguments as `inkstone export gguf`), so a long export survives
a closed tab; argument errors come back at the field they name. Below it, recent export jobs with live
progress, and one row per exported file with what verification measured: size, perplexity delta and top-1
agreement against the HF model, llama.cpp's decode speed, and the path to copy.

"Evaluate each quant" asks the export job to start `eval` jobs (same tasks, limit and mode) for the HF model and
every file once they are written; their scores come back as a table with each type's loss in points.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from nicegui import ui

from app.queries import exports_with_model
from app.registry import list_models
from app.tables import Export, Job
from jobs import api
from ui import state
from ui.components.formatting import human_bytes
from ui.components.job_widgets import JobActions, JobProgress, StatusBadge
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t
from ui.pages.export_evals import QuantComparison, quant_comparisons, render_comparison

DEFAULT_QUANTS = ["f16", "q8_0", "q4_k_m"]
DEFAULT_EVAL_TASKS = "arc_easy,mmlu"
DEFAULT_EVAL_LIMIT = 50
RESULT_COLUMNS = ("File", "Model", "Type", "Size", "Perplexity delta", "Top-1 agreement", "llama.cpp tokens/s", "")
JOBS_SHOWN = 5


def _fmt(metrics: dict, key: str, fmt: str) -> str:
    return format(metrics[key], fmt) if key in metrics else "—"


class ExportView:
    def __init__(self, root: Path):
        from engine.export.quant_types import QUANT_TYPES  # a table of names only: no torch, no llama.cpp

        self.root = root
        self.exports: list[tuple[Export, str]] = []
        self.job_rows: dict[int, tuple[StatusBadge, JobProgress, ui.label, JobActions]] = {}
        with ui.card().classes("w-full max-w-3xl"):
            ui.label(t("Export a model to GGUF")).classes("text-lg")
            self.model = ui.select({}, label=t("Model")).classes("w-full").mark("export-model")
            self.adapter = ui.input(t("LoRA adapter folder (optional)"),
                                    placeholder=t("A PEFT adapter folder to merge in first")).classes(
                "w-full").mark("export-adapter")
            self.quant = ui.select(list(QUANT_TYPES), value=list(DEFAULT_QUANTS), multiple=True,
                                   label=t("Types")).props("use-chips").classes("w-full").mark("export-quant")
            self.output = ui.input(t("Output folder (optional)"),
                                   placeholder=t("Default: the job's folder in the data dir")).classes(
                "w-full").mark("export-output")
            self.verify = ui.switch(t("Verify every file with llama.cpp"), value=True).mark("export-verify")
            self.evaluate = ui.switch(t("Evaluate each quant beside the HF model"), value=False).mark(
                "export-evaluate")
            with ui.row().classes("w-full items-start gap-3").bind_visibility_from(self.evaluate, "value"):
                self.eval_tasks = ui.input(t("Tasks"), value=DEFAULT_EVAL_TASKS,
                                           placeholder="arc_easy,mmlu,hellaswag").classes("grow").mark(
                    "export-eval-tasks")
                self.eval_limit = ui.number(t("Questions per task (0: all)"), value=DEFAULT_EVAL_LIMIT, min=0,
                                            precision=0).classes("w-44").mark("export-eval-limit")
                self.eval_mode = ui.select({"ppl": t("PPL (log-likelihood)"), "gen": t("Generation")}, value="ppl",
                                           label=t("Mode")).classes("w-44").mark("export-eval-mode")
            ui.button(t("Export"), icon="output", on_click=self.submit).mark("export-submit")
        ui.label(t("Export jobs")).classes("text-lg")
        self.jobs_box = ui.column().classes("w-full gap-1")
        ui.label(t("Exported files")).classes("text-lg")
        self.results()
        self.comparisons: list[QuantComparison] = []
        ui.label(t("Quant damage: scores per type beside the HF model")).classes("text-lg")
        self.quant_evals()

    async def start(self) -> None:
        models = await io_bound(list_models, self.root)
        self.model.set_options({m.name: m.name for m in models})
        if models and self.model.value is None:
            self.model.set_value(models[0].name)
        await self.reload()
        ui.timer(2.0, self.reload)

    async def reload(self) -> None:
        jobs = await io_bound(api.list_jobs, self.root, JOBS_SHOWN, "export_gguf")
        self._show_jobs(jobs)
        exports = await io_bound(exports_with_model, self.root)
        if [(e.model_dump(), n) for e, n in exports] != [(e.model_dump(), n) for e, n in self.exports]:
            self.exports = exports
            self.results.refresh()
        comparisons = await io_bound(quant_comparisons, self.root)
        if _shown(comparisons) != _shown(self.comparisons):
            self.comparisons = comparisons
            self.quant_evals.refresh()

    def _show_jobs(self, jobs: list[Job]) -> None:
        if not jobs and not self.job_rows:
            self.jobs_box.clear()
            with self.jobs_box:
                ui.label(t("No export jobs yet.")).classes("opacity-70")
            return
        if set(self.job_rows) != {j.id for j in jobs}:  # a new job: rebuild the few rows
            self.jobs_box.clear()
            self.job_rows = {}
            with self.jobs_box:
                for job in jobs:
                    with ui.row().classes("items-center gap-3 w-full no-wrap").mark(f"export-job-{job.id}"):
                        ui.link(f"#{job.id}", f"/jobs/{job.id}")
                        badge = StatusBadge(job)
                        bar = JobProgress(job).classes("w-64")
                        message = ui.label().classes("text-sm opacity-80")
                        actions = JobActions(self.root, job, dense=True, on_change=self.reload)
                    self.job_rows[job.id] = (badge, bar, message, actions)
        for job in jobs:
            badge, bar, message, actions = self.job_rows[job.id]
            badge.show(job)
            bar.show(job)
            message.set_text(job.error.splitlines()[-1] if job.error else job.message)
            actions.show(job)

    @ui.refreshable_method
    def results(self) -> None:
        if not self.exports:
            ui.label(t("No exported files yet.")).classes("opacity-70")
            return
        with ui.element("q-markup-table").props("flat bordered dense wrap-cells").classes("w-full"):
            with ui.element("thead"), ui.element("tr"):
                for label in RESULT_COLUMNS:
                    with ui.element("th").classes("text-left"):
                        ui.label(t(label) if label else "")
            with ui.element("tbody"):
                for export, model_name in self.exports:
                    self._result_row(export, model_name)

    @ui.refreshable_method
    def quant_evals(self) -> None:
        if not self.comparisons:
            ui.label(t("No quant evaluations yet: turn on \"Evaluate each quant beside the HF model\" above.")
                     ).classes("opacity-70")
        for comparison in self.comparisons:
            render_comparison(comparison)

    def _result_row(self, e: Export, model_name: str) -> None:
        m = e.metrics or {}
        cells = (model_name, e.quant.upper(), human_bytes(e.size_bytes), _fmt(m, "ppl_delta_pct", "+.2f") + (
            " %" if "ppl_delta_pct" in m else ""), _fmt(m, "top1_agreement", ".3f"), _fmt(m, "tokens_per_s", ".1f"))
        with ui.element("tr").mark(f"export-row-{e.id}"):
            with ui.element("td"), ui.column().classes("gap-0"):
                ui.label(Path(e.path).name).classes("font-medium")
                ui.label(str(Path(e.path).parent)).classes("text-xs opacity-60 break-all")
            for text in cells:
                with ui.element("td"):
                    ui.label(text)
            with ui.element("td"), ui.row().classes("no-wrap gap-0"):
                with ui.button(icon="chat", on_click=lambda e=e: ui.navigate.to(f"/chat?model={quote(e.path)}")).props(
                        "flat dense").mark(f"chat-{e.id}"):
                    ui.tooltip(t("Chat with this file through llama.cpp"))
                with ui.button(icon="download", on_click=lambda e=e: self.download(e)).props("flat dense").mark(
                        f"download-{e.id}"):
                    ui.tooltip(t("Download the file"))
                with ui.button(icon="folder_open", on_click=lambda e=e: self.copy_folder(e)).props(
                        "flat dense").mark(f"copy-{e.id}"):
                    ui.tooltip(t("Copy the folder's path"))

    def download(self, e: Export) -> None:
        if not Path(e.path).is_file():
            ui.notify(t("{path} is no longer there.", path=e.path), type="warning")
            return
        ui.download.file(e.path)

    def copy_folder(self, e: Export) -> None:
        folder = str(Path(e.path).parent)
        ui.clipboard.write(folder)
        ui.notify(t("Copied {path}", path=folder))

    async def submit(self) -> None:
        self.adapter.error = self.output.error = self.quant.error = self.model.error = None
        if not self.model.value:
            self.model.error = t("Pick a model (register one on the Models page).")
            return
        self.eval_tasks.error = None
        params = {"model": self.model.value, "quant": ",".join(self.quant.value or []), "verify": self.verify.value}
        if self.evaluate.value:
            params |= {"eval_tasks": (self.eval_tasks.value or "").strip(), "eval_mode": self.eval_mode.value,
                       "eval_limit": int(self.eval_limit.value or 0)}
            if not params["eval_tasks"]:
                self.eval_tasks.error = t("Name at least one task, e.g. arc_easy.")
                return
        for key, field in (("adapter", self.adapter), ("output", self.output)):
            if (field.value or "").strip():  # resolved here: the worker runs in another working directory
                params[key] = str(Path(field.value.strip()).expanduser().resolve())
        try:
            job = await io_bound(api.submit, self.root, "export_gguf", params)
        except ValueError as e:  # the kind's own argument checks, before anything is queued
            text = str(e)
            field = next((f for key, f in (("adapter", self.adapter), ("output", self.output),
                                           ("quant", self.quant), ("eval_tasks", self.eval_tasks))
                          if text.startswith(f"{key}:")), self.model)
            field.error = text.split(":", 1)[1].strip() if ":" in text else text
            return
        except Exception as e:  # the queue could not be written: the job row is marked failed
            ui.notify(t("Could not queue the export: {error}", error=str(e)), type="negative")
            return
        ui.notify(t("Export queued as job #{id}.", id=job.id), type="positive")
        await self.reload()


def _shown(comparisons: list[QuantComparison]) -> list:
    """What the quant table displays, to redraw it only when that changes."""
    return [(c.export_job.id, c.states, c.rows) for c in comparisons]


@ui.page("/export")
async def export_page():
    with frame(t("Export")):
        await ExportView(state.root()).start()
