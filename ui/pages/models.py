"""The Models page: what is registered (with what a user wants to know before picking one), import, remove.

Imports run as jobs (a GGUF conversion takes minutes), so the dialog refuses to queue one that is bound to
fail: the import kind's own argument checks (the path exists; a file is a .gguf) run at submit, and two
cheap ones of its own (a folder has config.json; the name is free) run before. The
table re-reads the registry every two seconds and redraws only when it changed, so a finished import
appears on its own.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app.queries import model_names
from app.registry import list_models, remove_model
from app.tables import Model
from jobs import api
from jobs import status as st
from ui import state
from ui.components.formatting import human_bytes, human_count
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t

COLUMNS = ("Name", "Architecture", "Parameters", "Context", "Dtype", "Size on disk", "Chat template", "Source",
           "")


def _check_import(root: Path, path: str, name: str) -> tuple[str, str]:
    """(error at the path field, error at the name field) for what the kind's own check leaves to the job:
    a folder that is no HF model, a name already taken."""
    p = Path(path).expanduser()
    if path and p.is_dir() and not (p / "config.json").is_file():
        return t("Not an HF model folder: it has no config.json."), ""
    if name and name in model_names(root):
        return "", t("A model named {name} is already registered.", name=name)
    return "", ""


def _field_of(error: ValueError) -> tuple[str, str]:
    """Put the kind's argument error ("path: …", "import_model: field 'name': …") at the field it names."""
    text = str(error)
    if text.startswith("name:") or "'name'" in text:
        return "", text.removeprefix("name:").strip()
    return text.removeprefix("path:").strip(), ""


def _bundled_setup_job(root: Path) -> int | None:
    """The id of a queued or running setup of the bundled model, so the button is not offered twice."""
    jobs = api.list_jobs(root, 200, "import_model")
    return next((j.id for j in jobs if j.status in st.ACTIVE and j.params.get("bundled")), None)


def _notify_job(text: str, job_id: int) -> None:
    link = f'<a href="/jobs/{job_id}" style="text-decoration: underline">{t("Open job #{id}", id=job_id)}</a>'
    ui.notify(f"{text} {link}", type="positive", html=True, close_button=True, timeout=8000)


class ModelsView:
    def __init__(self, root: Path):
        self.root = root
        self.models: list[Model] = []
        self.bundled_job: int | None = None
        with ui.row().classes("items-center gap-2"):
            ui.button(t("Import"), icon="download", on_click=self.open_import).mark("import-open")
            self.bundled_btn = ui.button(t("Set up the bundled model"), icon="auto_awesome",
                                         on_click=self.setup_bundled).props("outline").mark("setup-bundled")
            self.bundled_note = ui.link("", "/jobs").classes("text-sm")
        self.table()
        self.import_dialog = self._build_import_dialog()

    async def start(self) -> None:
        """First read before the page is delivered, then every two seconds."""
        await self.reload()
        ui.timer(2.0, self.reload)

    async def reload(self) -> None:
        models = await io_bound(list_models, self.root)
        self.bundled_job = await io_bound(_bundled_setup_job, self.root)
        has_bundled = any(m.source == "bundled" for m in models)
        self.bundled_btn.set_visibility(not has_bundled and self.bundled_job is None)
        self.bundled_note.set_visibility(not has_bundled and self.bundled_job is not None)
        if self.bundled_job is not None:
            self.bundled_note.set_text(t("Setting up the bundled model (job #{id})…", id=self.bundled_job))
            self.bundled_note.props(f"href=/jobs/{self.bundled_job}")
        if [m.model_dump() for m in models] != [m.model_dump() for m in self.models]:
            self.models = models
            self.table.refresh()

    @ui.refreshable_method
    def table(self) -> None:
        if not self.models:
            ui.label(t("No models registered yet. Import one, or set up the bundled model.")).classes("opacity-70")
            return
        with ui.element("q-markup-table").props("flat bordered dense wrap-cells").classes("w-full"):
            with ui.element("thead"), ui.element("tr"):
                for label in COLUMNS:
                    with ui.element("th").classes("text-left"):
                        ui.label(t(label) if label else "")
            with ui.element("tbody"):
                for m in self.models:
                    self._row(m)

    def _row(self, m: Model) -> None:
        cells = (m.arch or "—", human_count(m.params) if m.params else "—",
                 f"{m.context_len:,}" if m.context_len else "—", m.dtype or "—", human_bytes(m.size_bytes),
                 t("Yes") if m.has_chat_template else t("No"), t(m.source))
        with ui.element("tr").mark(f"model-row-{m.id}"):
            with ui.element("td"), ui.column().classes("gap-0"):
                ui.label(m.name).classes("font-medium")
                ui.label(m.path).classes("text-xs opacity-60 break-all")
            for text in cells:
                with ui.element("td"):
                    ui.label(text)
            with ui.element("td"), ui.row().classes("gap-1 no-wrap"):
                with ui.button(icon="content_copy", on_click=lambda m=m: self.copy_path(m)).props("flat dense"):
                    ui.tooltip(t("Copy path"))
                with ui.button(icon="delete", on_click=lambda m=m: self.confirm_remove(m)).props(
                        "flat dense color=negative").mark(f"remove-{m.id}"):
                    ui.tooltip(t("Remove"))

    def copy_path(self, m: Model) -> None:
        ui.clipboard.write(m.path)
        ui.notify(t("Copied {path}", path=m.path))

    def confirm_remove(self, m: Model) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(t("Remove model {name}?", name=m.name)).classes("text-lg")
            if m.managed:
                ui.label(t("Its folder in the data dir will be deleted: {path}", path=m.path))
            else:
                ui.label(t("Only the registry entry goes; the folder stays where it is: {path}", path=m.path))
            with ui.row().classes("w-full justify-end"):
                ui.button(t("Cancel"), on_click=dialog.close).props("flat")
                ui.button(t("Remove"), on_click=lambda: self.remove(m, dialog)).props(
                    "color=negative").mark("confirm-remove")
        dialog.open()

    async def remove(self, m: Model, dialog: ui.dialog) -> None:
        dialog.close()
        try:
            await io_bound(remove_model, self.root, m.id)
        except (LookupError, ValueError) as e:  # already gone, or the base of another model
            ui.notify(str(e), type="negative", multi_line=True)
        else:
            ui.notify(t("Removed {name}", name=m.name), type="positive")
        await self.reload()

    def _build_import_dialog(self) -> ui.dialog:
        with ui.dialog() as dialog, ui.card().classes("w-[36rem] max-w-full"):
            ui.label(t("Import a model")).classes("text-lg")
            self.path_input = ui.input(t("Path"), placeholder=t("An HF model folder or a .gguf file")).classes(
                "w-full").mark("import-path")
            self.name_input = ui.input(t("Name (optional)")).classes("w-full").mark("import-name")
            with ui.row().classes("w-full justify-end"):
                ui.button(t("Cancel"), on_click=dialog.close).props("flat")
                ui.button(t("Import"), on_click=self.submit_import).mark("import-submit")
        return dialog

    def open_import(self) -> None:
        self.path_input.error = self.name_input.error = None
        self.import_dialog.open()

    async def submit_import(self) -> None:
        path, name = (self.path_input.value or "").strip(), (self.name_input.value or "").strip()
        path_error, name_error = await io_bound(_check_import, self.root, path, name)
        job = None
        if not (path_error or name_error):
            # resolved here: the worker runs with another working directory; "" stays "" for the kind to refuse
            params = {"path": str(Path(path).expanduser().resolve()) if path else "", "name": name}
            try:
                job = await io_bound(api.submit, self.root, "import_model", params)
            except ValueError as e:  # the kind's own argument check, run before anything is written
                path_error, name_error = _field_of(e)
            except Exception as e:  # the queue could not be written: the job row is marked failed
                ui.notify(t("Could not queue the import: {error}", error=str(e)), type="negative")
                return
        self.path_input.error, self.name_input.error = path_error or None, name_error or None
        if job is not None:
            self.import_dialog.close()
            _notify_job(t("Import queued."), job.id)

    async def setup_bundled(self) -> None:
        try:
            job = await io_bound(api.submit, self.root, "import_model", {"bundled": True},
                                 title="Set up the bundled model")
        except Exception as e:  # the queue could not be written: the job row is marked failed
            ui.notify(t("Could not queue the import: {error}", error=str(e)), type="negative")
        else:
            _notify_job(t("Setting up the bundled model."), job.id)
        await self.reload()


@ui.page("/models")
async def models_page():
    with frame(t("Models")):
        await ModelsView(state.root()).start()
