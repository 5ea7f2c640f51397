"""The Datasets pages: start a data-preparation run on uploaded or local files (/datasets), and look at what a
run produced (/datasets/{id}).

A run is a `data_prep` job, so it shows in the same live job table as everything else and survives a closed
browser. Before queueing, the page shows the detected format and first rows of the first input with the chosen
text column, and checks the recipe JSON; the job's own argument checks run at submit, so a bad path or step is
reported at its field rather than as a failed job.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nicegui import events, ui

from app.queries import dataset_with_manifest, list_datasets, model_names
from app.tables import Dataset
from jobs import api
from ui import state
from ui.components.dataset_report import report
from ui.components.formatting import human_bytes, human_time
from ui.components.job_table import JobTable
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t

MAX_UPLOAD_BYTES = 4 << 30  # 4 GiB a file; larger corpora are better given as a local path


def _presets() -> dict[str, str]:
    from engine.data.recipe import PRESETS_DIR, preset_names

    return {name: (PRESETS_DIR / f"{name}.json").read_text(encoding="utf-8") for name in preset_names()}


def _preview(path: str, text_field: str, prompt_field: str) -> dict:
    from engine.data.readers import Columns, detect_format, preview, raw_fields

    p = Path(path.split(",")[0].strip()).expanduser()
    if p.is_dir():
        p = next((f for f in sorted(p.rglob("*")) if f.is_file() and detect_format(f)), p)
    if not p.is_file():
        return {"error": t("{path} is not a file or a folder with readable files.", path=str(p))}
    fmt, rows, notes = preview(p, Columns(text_field, prompt_field))
    return {"file": str(p), "format": fmt, "rows": rows, "notes": notes, "fields": raw_fields(p)}


def _save_recipe(root: Path, text: str, preset: str, presets: dict[str, str]) -> str:
    """The recipe reference to submit: the preset's name when unchanged, else a saved copy of the edited JSON.
    Raises ValueError naming the step and field when the JSON is not a valid recipe."""
    from engine.data.recipe import parse_recipe

    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"recipe: not valid JSON: {e}") from None
    parse_recipe(data)
    if preset in presets and json.loads(presets[preset]) == data:
        return preset
    folder = root / "recipes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data.get('name') or preset or 'recipe'}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


class NewRun:
    """Inputs (upload or paths), column mapping with a preview, recipe, and the Run button."""

    def __init__(self, root: Path, presets: dict[str, str], models: list[str], on_submitted):
        self.root, self.presets, self.on_submitted = root, presets, on_submitted
        with ui.card().classes("w-full gap-2"):
            ui.label(t("New run")).classes("text-lg font-medium")
            with ui.row().classes("w-full items-start gap-4"):
                ui.upload(label=t("Upload files"), multiple=True, auto_upload=True, max_file_size=MAX_UPLOAD_BYTES,
                          on_upload=self.uploaded,
                          on_rejected=lambda: ui.notify(t("File too large for upload; give its path instead."),
                                                        type="warning")).classes("w-72").mark("upload")
                with ui.column().classes("grow gap-1"):
                    self.inputs = ui.input(t("Files or folders on this machine (comma separated)")).classes(
                        "w-full").mark("data-input")
                    with ui.row().classes("items-center gap-2"):
                        self.text_field = ui.input(t("Text field"), value="text").classes("w-40").mark("text-field")
                        self.prompt_field = ui.input(t("Prompt field (SFT)")).classes("w-40")
                        ui.button(t("Preview"), icon="visibility", on_click=self.preview).props("outline").mark(
                            "preview")
                    self.preview_box = ui.column().classes("w-full gap-1")
            with ui.row().classes("w-full items-center gap-4"):
                self.preset = ui.select(list(presets), value="default" if "default" in presets else None,
                                        label=t("Recipe"), on_change=self.load_preset).classes("w-56").mark("preset")
                self.name = ui.input(t("Dataset name (optional)")).classes("w-56").mark("dataset-name")
                self.tokenizer = ui.select([""] + models, value="", label=t("Count tokens with model")).classes("w-64")
            self.recipe = ui.codemirror(presets.get(self.preset.value or "", ""), language="JSON").classes(
                "w-full h-72").mark("recipe-editor")
            with ui.row().classes("items-center gap-2"):
                ui.button(t("Run"), icon="play_arrow", on_click=self.submit).mark("run")
                self.error = ui.label().classes("text-negative text-sm").mark("run-error")

    def load_preset(self) -> None:
        self.recipe.set_value(self.presets.get(self.preset.value, ""))

    async def uploaded(self, e: events.UploadEventArguments) -> None:
        folder = self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(e.file.name).name
        await e.file.save(target)  # streamed to disk by NiceGUI; never held whole in memory here
        paths = [p for p in (self.inputs.value or "").split(",") if p.strip()] + [str(target)]
        self.inputs.set_value(", ".join(paths))
        await self.preview()

    async def preview(self) -> None:
        self.preview_box.clear()
        result = await io_bound(_preview, self.inputs.value or "", self.text_field.value or "text",
                                self.prompt_field.value or "")
        with self.preview_box:
            if "error" in result:
                ui.label(result["error"]).classes("text-negative text-sm")
                return
            ui.label(t("{file}: format {fmt}", file=Path(result["file"]).name, fmt=result["format"])).classes(
                "text-sm").mark("preview-format")
            if result["fields"]:
                ui.select(result["fields"], value=self.text_field.value if self.text_field.value in result["fields"]
                          else None, label=t("Text field"),
                          on_change=lambda ev: self.text_field.set_value(ev.value)).classes("w-56")
            for note in result["notes"]:
                ui.label(note).classes("text-warning text-sm")
            for row in result["rows"]:
                ui.label(row["text"][:300]).classes("text-sm whitespace-pre-wrap border-l-2 pl-2")

    async def submit(self) -> None:
        self.error.set_text("")
        params = {"input": self.inputs.value or "", "text_field": self.text_field.value or "text",
                  "prompt_field": self.prompt_field.value or "", "name": self.name.value or "",
                  "tokenizer": self.tokenizer.value or ""}
        try:
            params["recipe"] = await io_bound(_save_recipe, self.root, self.recipe.value or "", self.preset.value,
                                              self.presets)
            job = await io_bound(api.submit, self.root, "data_prep", params)
        except ValueError as e:
            self.error.set_text(str(e))
            return
        ui.notify(t("Queued data run #{id}", id=job.id), type="positive")
        await self.on_submitted()


def _dataset_table(datasets: list[Dataset]) -> None:
    if not datasets:
        ui.label(t("No datasets yet. Run a recipe to make one.")).classes("opacity-60")
        return
    columns = [{"name": k, "label": t(label), "field": k, "align": "left"} for k, label in (
        ("name", "Name"), ("rows", "Rows"), ("size", "Size"), ("format", "Format"), ("created", "Created"),
        ("job", "Job"))]
    rows = [{"id": d.id, "name": d.name, "rows": f"{d.rows:,}", "size": human_bytes(d.size_bytes),
             "format": d.format, "created": human_time(d.created_at), "job": f"#{d.job_id}" if d.job_id else ""}
            for d in datasets]
    table = ui.table(columns=columns, rows=rows, row_key="id").classes("w-full").mark("dataset-table")
    table.add_slot("body-cell-name", '<q-td :props="props"><a :href="\'/datasets/\' + props.row.id" '
                                     'class="text-primary underline">{{ props.value }}</a></q-td>')


@ui.page("/datasets")
async def datasets_page():
    root = state.root()
    with frame(t("Datasets")):
        presets = await io_bound(_presets)
        models = await io_bound(model_names, root)

        @ui.refreshable
        async def listing() -> None:
            _dataset_table(await io_bound(list_datasets, root))

        runs: list[JobTable] = []  # built below the form; the form's callback refreshes it at once

        async def submitted() -> None:
            await runs[0].refresh()

        NewRun(root, presets, models, submitted)
        ui.label(t("Runs")).classes("text-lg font-medium")
        runs.append(JobTable(root, limit=20, kind="data_prep"))
        ui.label(t("Datasets")).classes("text-lg font-medium")
        await listing()
        ui.timer(3.0, listing.refresh)
        await runs[0].start()


@ui.page("/datasets/{dataset_id}")
async def dataset_page(dataset_id: str):
    root = state.root()
    with frame(t("Datasets")):
        ds, manifest = (await io_bound(dataset_with_manifest, root, int(dataset_id)) if dataset_id.isdigit()
                        else (None, None))
        if ds is None:
            ui.label(t("There is no dataset with id {id}.", id=dataset_id))
            return
        with ui.row().classes("items-center gap-4"):
            ui.label(ds.name).classes("text-xl font-medium").mark("dataset-title")
            ui.label(ds.path).classes("text-sm opacity-70 break-all")
            if ds.job_id:
                ui.link(t("Job #{id}", id=ds.job_id), f"/jobs/{ds.job_id}")
        with ui.expansion(t("Lineage: inputs and recipe"), icon="account_tree").classes("w-full"):
            for p in ds.inputs:
                ui.label(p).classes("text-sm break-all")
            ui.code(json.dumps(ds.recipe, ensure_ascii=False, indent=1), language="json").classes("w-full")
        if manifest is None:
            ui.label(t("The run's manifest.json is missing from {path}.", path=ds.path)).classes("text-negative")
            return
        report(manifest)
