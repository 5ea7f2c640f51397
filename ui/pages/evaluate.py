"""The Evaluate page: benchmark registered models, see the exact prompt before launch, read and compare results.

The form submits one `eval` job per chosen model (the same arguments as `inkstone eval`, including data-parallel
workers, an LLM judge, a second model to compare against, and a contamination check). The prompt preview is
built in a worker thread from the task files with the same code the run uses (no torch); in chat style the turns
are then rendered with the chosen model's own chat template in the worker process (app/worker_pool.py), so the
preview is the exact text the model reads while the web process never imports torch. Below: the results of
chosen runs in OpenCompass's table shape (judge metrics and clean-subset scores included), a leaderboard, a
run-to-run comparison with standard errors, a contamination panel and a sample browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nicegui import ui

from app import evals, worker_pool
from app.queries import list_datasets
from app.registry import gguf_files, list_models, resolve_model
from jobs import api
from ui import state
from ui.components.eval_contamination import ContaminationPanel
from ui.components.eval_samples import SampleBrowser
from ui.components.offload import io_bound
from ui.components.sandbox_status import sandbox_badge
from ui.frame import frame
from ui.i18n import t

if TYPE_CHECKING:
    from engine.eval.prompts import Prompt

JUDGE_FIELDS = ("judge", "against", "judge_tasks")  # EvalConfig's judge settings, sent only when filled in
JUDGE_METRICS = ("win_rate", "judge_accuracy")


def task_catalogue() -> dict[str, str]:
    """Task name -> its licence line, for the form, from the task registry itself (so every task a module
    registers, agent benchmarks included, shows up): groups first, then single tasks in registry order, then
    the groups' members (mmlu_<subject>). Imports task modules only: no torch."""
    from engine.eval.tasks import GROUPS, builtin_tasks

    licences = {task.name: task.licence for task in builtin_tasks()}
    members = {m for names in GROUPS.values() for m in names}
    catalogue = {group: licences[names[0]] for group, names in GROUPS.items() if names}
    catalogue |= {name: lic for name, lic in licences.items() if name not in members}
    return catalogue | {name: lic for name, lic in licences.items() if name in members}


def preview_parts(task_name: str, index: int, mode: str, shots: int, style: str, cot: bool, split: str
                  ) -> tuple[Prompt, list[str]]:
    """Item `index`'s prompt as the run builds it, and in PPL mode the continuations scored after it."""
    from engine.eval.prompts import PromptSettings, build_prompt, choice_requests, shots_for
    from engine.eval.task import ChoiceTask
    from engine.eval.tasks import expand, get_task

    task = get_task(expand(task_name)[0][1])
    if task.kind == "agent":
        raise ValueError(f"tasks: {task.name} is an agent benchmark: its prompts are the conversation the agent "
                         "loop builds at run time, so there is no single prompt to preview")
    split = task.check_split(split)
    docs = task.docs(split)
    doc = docs[max(0, min(index, len(docs) - 1))]
    settings = PromptSettings(mode=mode, shots=shots, style=style, cot=cot)
    shots_docs = shots_for(task, doc, task.fewshot_pool(split), settings)
    if isinstance(task, ChoiceTask) and mode == "ppl":
        reqs = choice_requests(task, doc, shots_docs, settings)
        return reqs[0][0], [cont for _, cont in reqs]
    return build_prompt(task, doc, shots_docs, settings), []


def compose_preview(text: str, continuations: list[str]) -> str:
    if not continuations:
        return text
    options = "\n".join(f"  [{i}] {cont!r}" for i, cont in enumerate(continuations))
    return f"{text}\n\n── scored continuations ──\n{options}"


def preview_prompt(task_name: str, index: int, mode: str, shots: int, style: str, cot: bool, split: str) -> str:
    """The exact text of item `index` as the run would build it (chat style: its turns, untemplated)."""
    prompt, continuations = preview_parts(task_name, index, mode, shots, style, cot, split)
    return compose_preview(prompt.preview(), continuations)


def templated_preview(root: Path, model: str, prompt: Prompt, continuations: list[str]) -> str:
    """A chat-style prompt through the model's own chat template, rendered in the worker process."""
    path = resolve_model(root, model).path
    return compose_preview(worker_pool.render_chat_template(path, prompt.messages), continuations)


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
            self.adapter = ui.input(
                t("LoRA adapter applied to the models (optional)"),
                placeholder=t("Folder of a finetune's adapter, e.g. ~/.inkstone/jobs/7/adapter"),
            ).classes("w-full").mark("eval-adapter")
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
                self.workers = ui.number(t("Engine processes (data parallel)"), value=1, min=1, max=64,
                                         precision=0).classes("w-48").mark("eval-workers")
            self.contamination = ui.select({"": t("No check")}, value="", with_input=True,
                                           label=t("Contamination check against a training dataset")).classes(
                "w-full").mark("eval-contamination")
            self.judge_inputs: dict[str, ui.input] = {}
            with ui.row().classes("items-center gap-4 w-full"):
                labels = {"judge": t("LLM judge (a model or an OpenAI-compatible URL)"),
                          "against": t("Compare against model (pairwise, needs a judge)"),
                          "judge_tasks": t("Tasks the judge grades (empty: your own open sets; all)")}
                for name in JUDGE_FIELDS:
                    self.judge_inputs[name] = ui.input(labels[name]).classes("w-72").mark(f"eval-{name}")
            self.licences()
            with ui.row().classes("gap-2 items-center"):
                ui.button(t("Evaluate"), icon="fact_check", on_click=self.submit).mark("eval-submit")
                ui.button(t("Preview a prompt"), icon="visibility", on_click=self.preview).props("outline").mark(
                    "eval-preview")
                self.index = ui.number(t("Item"), value=0, min=0, precision=0).classes("w-20").mark("eval-index")
            self.preview_box = ui.code("").classes("w-full text-xs").mark("eval-preview-text")
            self.preview_box.set_visibility(False)
            self.preview_note = ui.label("").classes("text-xs opacity-70").mark("eval-preview-note")
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
        self.contamination_panel = ContaminationPanel(root)
        self.sample_browser = SampleBrowser(root)

    async def start(self, preselect: list[int] | None = None) -> None:
        models = await io_bound(list_models, self.root)
        names = [m.name for m in models]
        exports = await io_bound(gguf_files, self.root)  # every exported GGUF still on disk, run by llama.cpp
        self.models.set_options({name: name for name in names}
                                | {path: f"{Path(path).name} (GGUF)" for path in exports})
        for name in ("judge", "against"):
            if name in self.judge_inputs:
                self.judge_inputs[name].set_autocomplete(names)
        datasets = await io_bound(list_datasets, self.root)
        self.contamination.set_options({"": t("No check")} | {d.name: d.name for d in datasets})
        self.catalogue = await io_bound(task_catalogue)
        self.tasks.set_options({name: f"{name} · {lic}" for name, lic in self.catalogue.items()})
        self.licences.refresh()
        await self.reload()
        ui.timer(3.0, self.reload)
        if preselect:
            await self.open_runs(preselect)

    async def open_runs(self, run_ids: list[int]) -> None:
        """Show these runs' results (a link from elsewhere, e.g. a finetune's before/after); two are compared."""
        self.runs_table.selected = [row for row in self.runs_table.rows if row["id"] in run_ids]
        self.runs_table.update()
        await self.show_results()
        if len(run_ids) == 2:
            self.run_a.value, self.run_b.value = run_ids
            await self.show_compare()

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
            await self.contamination_panel.load()

    def _params(self) -> tuple[dict, str | None]:
        tasks = list(self.tasks.value or [])
        custom = (self.custom.value or "").strip()
        if custom:
            tasks.append(str(Path(custom).expanduser().resolve()))
        if not tasks:
            return {}, t("Pick at least one task.")
        params = {"tasks": ",".join(tasks), "mode": self.mode.value, "shots": int(self.shots.value or 0),
                  "style": self.style.value, "circular": bool(self.circular.value), "cot": bool(self.cot.value),
                  "limit": int(self.limit.value or 0), "dtype": self.dtype.value,
                  "workers": int(self.workers.value or 1)}
        # Optional settings travel only when set, so a job's parameters say what the user chose.
        if self.contamination.value:
            params["contamination"] = self.contamination.value
        if (self.adapter.value or "").strip():
            params["adapter"] = str(Path(self.adapter.value.strip()).expanduser())
        for name, field in self.judge_inputs.items():
            if (field.value or "").strip():
                params[name] = field.value.strip()
        return params, None

    async def submit(self) -> None:
        self.models.error = self.tasks.error = self.adapter.error = None
        for field in self.judge_inputs.values():
            field.error = None
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
            except ValueError as e:  # bad task names, a malformed custom file, judge settings: named at the field
                self._field_for(str(e)).error = str(e)
                return
            ids.append(f"#{job.id}")
        ui.notify(t("Evaluation queued as job {ids}.", ids=", ".join(ids)), type="positive")
        await self.reload()

    def _field_for(self, message: str):
        """The form field an error message names (`judge: …`, `workers: …`), else the task picker."""
        head = message.split(":", 1)[0].strip()
        if head in self.judge_inputs:
            return self.judge_inputs[head]
        return {"workers": self.workers, "contamination": self.contamination, "adapter": self.adapter}.get(
            head, self.tasks)

    async def preview(self) -> None:
        self.tasks.error = None
        params, problem = self._params()
        if problem:
            self.tasks.error = problem
            return
        first = params["tasks"].split(",")[0]
        try:
            prompt, continuations = await io_bound(preview_parts, first, int(self.index.value or 0), params["mode"],
                                                   params["shots"], params["style"], params["cot"], "")
        except ValueError as e:
            self.tasks.error = str(e)
            return
        text, note = compose_preview(prompt.preview(), continuations), t("Exactly what the model reads.")
        if prompt.messages and self.models.value:
            model = self.models.value[0]
            self.preview_note.set_text(t("Rendering with {model}'s chat template…", model=model))
            try:
                text = await io_bound(templated_preview, self.root, model, prompt, continuations)
                note = t("Rendered with {model}'s own chat template: exactly what the model reads.", model=model)
            except (ValueError, LookupError, RuntimeError) as e:  # no template, no tokenizer, the worker died
                note = t("Could not apply {model}'s chat template: {error}", model=model, error=str(e))
        elif prompt.messages:
            note = t("Chat style: these turns are rendered with the model's own chat template when the job runs. "
                     "Pick a model to see the exact text.")
        self.preview_box.set_content(text)
        self.preview_box.set_visibility(True)
        self.preview_note.set_text(note)

    async def show_results(self) -> None:
        run_ids = [row["id"] for row in self.runs_table.selected]
        self.results_box.clear()
        if not run_ids:
            return
        columns, rows = await io_bound(evals.results_table, self.root, run_ids)
        runs = [await io_bound(evals.get_run, self.root, i) for i in run_ids]
        with self.results_box:
            cols = [{"name": k, "label": t(k), "field": k} for k in ("dataset", "version", "metric", "mode")]
            cols += [{"name": c, "label": c, "field": c} for c in columns]
            ui.table(columns=cols, rows=rows).classes("w-full").mark("eval-results")
            for run in runs:
                self._run_notes(run, rows)

    def _run_notes(self, run, rows: list[dict]) -> None:
        """What a score depends on beyond the table: the judge that graded it, the dataset it was checked against."""
        settings = run.settings or {}
        label = evals.run_label(run)
        if settings.get("judge"):
            judged = sorted({r["metric"] for r in rows if r["metric"].startswith(JUDGE_METRICS) and label in r})
            text = t("{run}: judged by {judge}", run=label, judge=settings["judge"])
            if settings.get("against"):
                text += " · " + t("compared against {model}", model=settings["against"])
            if settings.get("judge_prompt"):
                text += " · " + t("judge prompt {hash}", hash=settings["judge_prompt"])
            if judged:
                text += " · " + ", ".join(judged)
            ui.label(text).classes("text-xs opacity-70").mark(f"eval-judge-note-{run.id}")
        if settings.get("contamination"):
            check = settings["contamination"]
            ui.label(t("{run}: *_clean rows are scores on the items that share no {n}-gram with {dataset}",
                       run=label, n=check.get("n", ""), dataset=check.get("dataset", ""))).classes(
                "text-xs opacity-70")

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


@ui.page("/evaluate")
async def evaluate_page(runs: str = "", compare: str = ""):
    """`/evaluate?runs=3,5` opens those runs' results; two runs (or `?compare=3,5`) are also compared."""
    wanted = [int(part) for part in f"{runs},{compare}".split(",") if part.strip().isdigit()]
    with frame(t("Evaluate")):
        sandbox_badge()
        await EvaluateView(state.root()).start(list(dict.fromkeys(wanted)))
