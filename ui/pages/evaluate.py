"""The Evaluate page: benchmark registered models, see the exact prompt before launch, read and compare results.

The form submits one `eval` job per chosen model (the same arguments as `inkstone eval`). The prompt preview is
built in a worker thread from the task files with the same code the run uses (no torch); a chat-style prompt
is shown as its turns, since the template itself is rendered by the model's tokenizer in the job. Below: the
results of chosen runs in OpenCompass's table shape, a leaderboard, a run-to-run comparison with standard
errors, and a sample browser (wrong answers, extracted vs gold, programs and their sandbox outcome).
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app import evals
from app.registry import list_models
from jobs import api
from ui import state
from ui.components.offload import io_bound
from ui.components.sandbox_status import sandbox_badge
from ui.frame import frame
from ui.i18n import t

CORE_TASKS = ["mmlu", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "piqa", "gsm8k", "math500",
              "humaneval", "mbpp"]


def task_catalogue() -> dict[str, str]:
    """Task name -> its licence line, for the form (imports task modules only: no torch)."""
    from engine.eval.tasks import builtin_tasks

    licences = {task.name: task.licence for task in builtin_tasks()}
    licences["mmlu"] = licences["mmlu_anatomy"]
    return {name: licences[name] for name in CORE_TASKS} | {
        n: lic for n, lic in licences.items() if n.startswith("mmlu_")}


def preview_prompt(task_name: str, index: int, mode: str, shots: int, style: str, cot: bool, split: str) -> str:
    """The exact text of item `index` as the run would build it (chat style: its turns)."""
    from engine.eval.prompts import PromptSettings, build_prompt, choice_requests, shots_for
    from engine.eval.task import ChoiceTask
    from engine.eval.tasks import expand, get_task

    task = get_task(expand(task_name)[0][1])
    split = task.check_split(split)
    docs = task.docs(split)
    doc = docs[max(0, min(index, len(docs) - 1))]
    settings = PromptSettings(mode=mode, shots=shots, style=style, cot=cot)
    shots_docs = shots_for(task, doc, task.fewshot_pool(split), settings)
    if isinstance(task, ChoiceTask) and mode == "ppl":
        reqs = choice_requests(task, doc, shots_docs, settings)
        options = "\n".join(f"  [{i}] {cont!r}" for i, (_, cont) in enumerate(reqs))
        return f"{reqs[0][0].preview()}\n\n── scored continuations ──\n{options}"
    return build_prompt(task, doc, shots_docs, settings).preview()


class EvaluateView:
    def __init__(self, root: Path):
        self.root = root
        self.catalogue: dict[str, str] = {}
        with ui.card().classes("w-full max-w-4xl"):
            ui.label(t("Evaluate models")).classes("text-lg")
            self.models = ui.select({}, multiple=True, label=t("Models")).props("use-chips").classes(
                "w-full").mark("eval-models")
            self.tasks = ui.select([], value=["arc_easy"], multiple=True, label=t("Tasks"),
                                   on_change=lambda: self.licences.refresh()).props("use-chips").classes(
                "w-full").mark("eval-tasks")
            self.custom = ui.input(t("Your own test set (optional)"),
                                   placeholder=t("Path of a .csv or .jsonl file")).classes("w-full").mark(
                "eval-custom")
            with ui.row().classes("items-center gap-4"):
                self.mode = ui.radio({"ppl": t("PPL (log-likelihood)"), "gen": t("Generation")},
                                     value="ppl").props("inline").mark("eval-mode")
                self.shots = ui.number(t("Shots"), value=0, min=0, max=25, precision=0).classes("w-24").mark(
                    "eval-shots")
                self.style = ui.select({"base": t("Base prompt"), "chat": t("Chat template")}, value="base",
                                       label=t("Prompt style")).classes("w-40").mark("eval-style")
                self.limit = ui.number(t("Questions per task (0: all)"), value=0, min=0, precision=0).classes(
                    "w-48").mark("eval-limit")
            with ui.row().classes("items-center gap-4"):
                self.circular = ui.switch(t("CircularEval")).mark("eval-circular")
                self.cot = ui.switch(t("Chain-of-thought")).mark("eval-cot")
                self.dtype = ui.select(["auto", "float32", "bfloat16", "float16"], value="auto",
                                       label=t("dtype")).classes("w-32").mark("eval-dtype")
            self.licences()
            with ui.row().classes("gap-2"):
                ui.button(t("Evaluate"), icon="fact_check", on_click=self.submit).mark("eval-submit")
                ui.button(t("Preview a prompt"), icon="visibility", on_click=self.preview).props("outline").mark(
                    "eval-preview")
                self.index = ui.number(t("Item"), value=0, min=0, precision=0).classes("w-20").mark("eval-index")
            self.preview_box = ui.code("").classes("w-full text-xs").mark("eval-preview-text")
            self.preview_box.set_visibility(False)
            self.preview_note = ui.label("").classes("text-xs opacity-70")
        ui.label(t("Runs")).classes("text-lg")
        self.runs_table = ui.table(columns=[
            {"name": "id", "label": "#", "field": "id"}, {"name": "model", "label": t("Model"), "field": "model"},
            {"name": "tasks", "label": t("Tasks"), "field": "tasks"}, {"name": "mode", "label": t("Mode"),
                                                                       "field": "mode"},
            {"name": "hash", "label": t("Settings hash"), "field": "hash"},
            {"name": "status", "label": t("Status"), "field": "status"}], rows=[], row_key="id",
            selection="multiple", on_select=lambda: self.show_results()).classes("w-full").mark("eval-runs")
        ui.label(t("Results")).classes("text-lg")
        self.results_box = ui.column().classes("w-full")
        with ui.row().classes("items-end gap-4"):
            ui.label(t("Leaderboard")).classes("text-lg")
            self.lb_task = ui.input(t("Task"), value="arc_easy").classes("w-48").mark("eval-lb-task")
            self.lb_metric = ui.input(t("Metric"), value="acc").classes("w-32").mark("eval-lb-metric")
            ui.button(t("Show"), on_click=self.show_leaderboard).props("outline").mark("eval-lb-show")
        self.leaderboard_box = ui.column().classes("w-full")
        with ui.row().classes("items-end gap-4"):
            ui.label(t("Compare two runs")).classes("text-lg")
            self.run_a = ui.number(t("Run A"), precision=0).classes("w-24").mark("eval-run-a")
            self.run_b = ui.number(t("Run B"), precision=0).classes("w-24").mark("eval-run-b")
            ui.button(t("Compare"), on_click=self.show_compare).props("outline").mark("eval-compare")
        self.compare_box = ui.column().classes("w-full")
        with ui.row().classes("items-end gap-4"):
            ui.label(t("Samples")).classes("text-lg")
            self.sample_run = ui.number(t("Run"), precision=0).classes("w-24").mark("eval-sample-run")
            self.sample_task = ui.input(t("Task")).classes("w-48").mark("eval-sample-task")
            self.wrong_only = ui.switch(t("Wrong answers only"), value=True).mark("eval-wrong-only")
            self.search = ui.input(t("Search")).classes("w-48").mark("eval-search")
            ui.button(t("Show"), on_click=self.show_samples).props("outline").mark("eval-samples-show")
        self.samples_box = ui.column().classes("w-full")

    async def start(self) -> None:
        models = await io_bound(list_models, self.root)
        self.models.set_options({m.name: m.name for m in models})
        self.catalogue = await io_bound(task_catalogue)
        self.tasks.set_options(list(self.catalogue))
        self.licences.refresh()
        await self.reload()
        ui.timer(3.0, self.reload)

    @ui.refreshable_method
    def licences(self) -> None:
        for name in self.tasks.value or []:
            if name in self.catalogue:
                ui.label(f"{name}: {t('licence')} {self.catalogue[name]}").classes("text-xs opacity-70")

    async def reload(self) -> None:
        runs = await io_bound(evals.list_runs, self.root)
        rows = [{"id": r.id, "model": r.model_ref, "tasks": r.tasks, "mode": r.mode, "hash": r.settings_hash,
                 "status": t(r.status)} for r in runs]
        if rows != self.runs_table.rows:
            self.runs_table.rows = rows
            self.runs_table.update()

    def _params(self) -> tuple[dict, str | None]:
        tasks = list(self.tasks.value or [])
        custom = (self.custom.value or "").strip()
        if custom:
            tasks.append(str(Path(custom).expanduser().resolve()))
        if not tasks:
            return {}, t("Pick at least one task.")
        params = {"tasks": ",".join(tasks), "mode": self.mode.value, "shots": int(self.shots.value or 0),
                  "style": self.style.value, "circular": bool(self.circular.value), "cot": bool(self.cot.value),
                  "limit": int(self.limit.value or 0), "dtype": self.dtype.value}
        return params, None

    async def submit(self) -> None:
        self.models.error = self.tasks.error = None
        params, problem = self._params()
        if problem:
            self.tasks.error = problem
            return
        if not self.models.value:
            self.models.error = t("Pick a model (register one on the Models page).")
            return
        ids = []
        for model in self.models.value:
            try:
                job = await io_bound(api.submit, self.root, "eval", {**params, "model": model})
            except ValueError as e:  # bad task names, a malformed custom file: named at the field
                self.tasks.error = str(e)
                return
            ids.append(f"#{job.id}")
        ui.notify(t("Evaluation queued as job {ids}.", ids=", ".join(ids)), type="positive")
        await self.reload()

    async def preview(self) -> None:
        params, problem = self._params()
        if problem:
            self.tasks.error = problem
            return
        first = params["tasks"].split(",")[0]
        try:
            text = await io_bound(preview_prompt, first, int(self.index.value or 0), params["mode"], params["shots"],
                                  params["style"], params["cot"], "")
        except ValueError as e:
            self.tasks.error = str(e)
            return
        self.preview_box.set_content(text)
        self.preview_box.set_visibility(True)
        note = t("Chat style: these turns are rendered with the model's own chat template when the job runs.")
        self.preview_note.set_text(note if params["style"] == "chat" else t("Exactly what the model reads."))

    async def show_results(self) -> None:
        run_ids = [row["id"] for row in self.runs_table.selected]
        self.results_box.clear()
        if not run_ids:
            return
        columns, rows = await io_bound(evals.results_table, self.root, run_ids)
        with self.results_box:
            cols = [{"name": k, "label": t(k), "field": k} for k in ("dataset", "version", "metric", "mode")]
            cols += [{"name": c, "label": c, "field": c} for c in columns]
            ui.table(columns=cols, rows=rows).classes("w-full").mark("eval-results")

    async def show_leaderboard(self) -> None:
        rows = await io_bound(evals.leaderboard, self.root, self.lb_task.value.strip(), self.lb_metric.value.strip())
        self.leaderboard_box.clear()
        with self.leaderboard_box:
            if not rows:
                ui.label(t("No finished results for that task and metric.")).classes("opacity-70")
                return
            ui.table(columns=[{"name": k, "label": t(k), "field": k} for k in ("model", "score", "stderr", "run")],
                     rows=[{"model": r["model"], "score": f"{100 * r['value']:.2f}",
                            "stderr": f"{100 * r['stderr']:.2f}" if r["stderr"] is not None else "—",
                            "run": r["run_id"]} for r in rows]).classes("w-full").mark("eval-leaderboard")

    async def show_compare(self) -> None:
        if self.run_a.value is None or self.run_b.value is None:
            return
        rows = await io_bound(evals.compare, self.root, int(self.run_a.value), int(self.run_b.value))
        self.compare_box.clear()
        with self.compare_box:
            ui.table(columns=[{"name": k, "label": t(k), "field": k} for k in ("task", "metric", "A", "B", "delta",
                                                                              "stderr")],
                     rows=[{"task": r["task"], "metric": r["metric"], "A": f"{100 * r['a']:.2f}",
                            "B": f"{100 * r['b']:.2f}", "delta": f"{100 * r['delta']:+.2f}",
                            "stderr": f"±{100 * r['stderr']:.2f}" if r["stderr"] is not None else "—"}
                           for r in rows]).classes("w-full").mark("eval-compare-table")

    async def show_samples(self) -> None:
        if self.sample_run.value is None:
            return
        found = await io_bound(evals.samples, self.root, int(self.sample_run.value), self.sample_task.value.strip(),
                               bool(self.wrong_only.value), self.search.value.strip())
        self.samples_box.clear()
        with self.samples_box:
            if not found:
                ui.label(t("No samples match.")).classes("opacity-70")
            for smp in found:
                mark = "✓" if smp.correct else "✗"
                title = f"{mark} {smp.task} #{smp.doc_id} — {t('extracted')}: {smp.extracted!r} · {t('gold')}: " \
                        f"{smp.gold!r}" + (f" · {smp.outcome}" if smp.outcome else "")
                with ui.expansion(title).classes("w-full").mark(f"eval-sample-{smp.id}"):
                    ui.code(smp.prompt[-4000:]).classes("w-full text-xs")
                    ui.label(t("Answer")).classes("font-medium")
                    ui.code(smp.answer or "").classes("w-full text-xs")
                    if smp.detail.get("program"):
                        ui.label(t("Program")).classes("font-medium")
                        ui.code(smp.detail["program"], language="python").classes("w-full text-xs")
                        ui.code(smp.detail.get("stderr", "")).classes("w-full text-xs")


@ui.page("/evaluate")
async def evaluate_page():
    with frame(t("Evaluate")):
        sandbox_badge()
        await EvaluateView(state.root()).start()
