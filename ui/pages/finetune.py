"""The Finetune pages: a wizard (/finetune) from model to launch with a dataset preview that shows which tokens
are trained, a pre-flight VRAM and time estimate, and a run page (/finetune/{id}) that reuses the Jobs detail
view (live loss/LR/grad-norm charts, telemetry, log) and adds checkpoints, merge, chat and run comparison.
The wizard can also have the base model and the result evaluated on benchmark tasks; the run page then shows
them before and after, per task.

Everything slow (reading the dataset, tokenizing, the planner) runs through io_bound; launching is a submit.
"""

from __future__ import annotations

import html
from pathlib import Path

from nicegui import events, ui

from app.finetune_wizard import DataPreview, eval_task_choices, gpu_memory_gib, load_presets, preview_dataset, vram_plan
from app.registry import list_models
from jobs import api
from jobs.kinds import get_kind
from ui import state
from ui.components.finetune_run import CompareRuns, EvalBeforeAfter, RunTools
from ui.components.job_view import JobView
from ui.components.job_widgets import find_job
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t

# Recommended starting points per method (the wizard fills them in when the method changes).
METHOD_DEFAULTS = {"lora": {"lr": 2e-4, "lora_r": 16, "grad_checkpointing": True},
                   "qlora": {"lr": 2e-4, "lora_r": 16, "grad_checkpointing": True},
                   "full": {"lr": 1e-5, "grad_checkpointing": True}}
METHOD_HELP = {"lora": "Small adapter on a frozen base: fast, little memory, easy to merge.",
               "qlora": "LoRA on a 4-bit base: the least memory (a 7B model in about 5 GiB).",
               "full": "Every weight trains: most memory; DeepSpeed ZeRO spreads it over GPUs."}
HYPER = [  # (field, label, min, max, step)
    ("seq_len", "Sequence length", 16, 131072, 16), ("batch_size", "Batch size", 1, 1024, 1),
    ("grad_accum", "Gradient accumulation", 1, 4096, 1), ("epochs", "Epochs", 1, 1000, 1),
    ("max_steps", "Max steps (0: all epochs)", 0, 10**9, 1), ("lr", "Learning rate", 1e-8, 1.0, None),
    ("lora_r", "LoRA rank", 1, 1024, 1), ("lora_alpha", "LoRA alpha", 1, 4096, 1),
    ("warmup_ratio", "Warmup ratio", 0, 0.5, 0.01), ("eval_fraction", "Eval fraction", 0, 0.49, 0.01),
    ("save_every", "Checkpoint every N steps", 0, 10**6, 1),
]


class Wizard:
    def __init__(self, root: Path, models: list, gpu_gib: float, eval_choices: dict[str, str] | None = None):
        self.root, self.models = root, {m.name: m for m in models}
        # The job kind's own dataclass (through jobs/, so no engine import here) gives the defaults.
        self.defaults = get_kind("finetune").args_cls()
        self.values = {f: getattr(self.defaults, f) for f in self.defaults.__dataclass_fields__}
        if self.models and self.values["model"] not in self.models:
            self.values["model"] = next(iter(self.models))
        self.preview = DataPreview()
        self.inputs: dict[str, ui.number] = {}
        with ui.stepper().props("vertical").classes("w-full") as self.stepper:
            with ui.step(t("Model")):
                ui.select(list(self.models), label=t("Base model")).bind_value(self.values, "model") \
                    .classes("w-96").mark("model-select")
                if not self.models:
                    ui.label(t("No models registered yet: add one on the Models page.")).classes("text-negative")
                presets = load_presets()
                ui.select({"": t("(none)"), **{k: k for k in presets}}, value="", label=t("Preset"),
                          on_change=lambda e: self.apply(presets.get(e.value, {}))).classes("w-96").mark("preset")
                self.nav(first=True)
            with ui.step(t("Dataset")):
                ui.input(t("Training file (.jsonl, .json, .csv, .parquet, .txt)")).bind_value(self.values, "data") \
                    .classes("w-full").mark("data-path")
                ui.upload(label=t("…or upload a file"), auto_upload=True, on_upload=self.uploaded).classes("w-96")
                ui.select(["auto", "alpaca", "sharegpt", "messages", "text"], label=t("Format")) \
                    .bind_value(self.values, "data_format").classes("w-48")
                ui.button(t("Preview"), icon="visibility", on_click=self.show_preview).mark("preview-button")
                self.preview_box = ui.column().classes("w-full gap-2")
                self.nav()
            with ui.step(t("Method")):
                method = ui.toggle(list(METHOD_DEFAULTS)).bind_value(self.values, "method").mark("method")
                self.method_help = ui.label(t(METHOD_HELP[self.values["method"]])).classes("text-sm opacity-70")
                method.on_value_change(lambda e: self.method_changed(e.value))
                ui.select(["auto", "sft", "pretrain"], label=t("Objective")).bind_value(self.values, "objective")
                self.nav()
            with ui.step(t("Hyperparameters")):
                with ui.grid(columns=3).classes("gap-3"):
                    for name, label, lo, hi, step in HYPER:
                        self.inputs[name] = ui.number(
                            t(label), min=lo, max=hi, step=step,
                            validation={t("Between {lo} and {hi}", lo=lo, hi=hi):
                                        lambda v, lo=lo, hi=hi: v is not None and lo <= v <= hi},
                        ).bind_value(self.values, name).mark(f"hp-{name}")
                    ui.checkbox(t("Gradient checkpointing")).bind_value(self.values, "grad_checkpointing")
                    ui.checkbox(t("Packing")).bind_value(self.values, "packing")
                    ui.checkbox(t("Merge and register when done")).bind_value(self.values, "merge")
                self.nav()
            with ui.step(t("Pre-flight")):
                self.gpu = ui.number(t("GPU memory (GiB)"), value=round(gpu_gib) or 80, min=1, max=4096).classes("w-48")
                ui.button(t("Estimate"), icon="calculate", on_click=self.estimate).mark("estimate-button")
                self.plan_box = ui.column().classes("w-full gap-1")
                self.nav()
            with ui.step(t("Evaluate")):
                self.eval_step(eval_choices or {})
                self.nav()
            with ui.step(t("Launch")):
                ui.button(t("Start finetune"), icon="rocket_launch", on_click=self.launch).mark("launch-button")
                self.error = ui.label().classes("text-negative").mark("launch-error")
                with ui.stepper_navigation():
                    ui.button(t("Back"), on_click=self.stepper.previous).props("flat")

    def eval_step(self, choices: dict[str, str]) -> None:
        """Evaluate the base model and the result on the same tasks, limit and mode (a path adds your own set)."""
        self.eval_on = ui.checkbox(t("Evaluate the base model and the result"),
                                   value=bool(self.values["eval_tasks"])).mark("eval-toggle")
        with ui.column().classes("gap-2").bind_visibility_from(self.eval_on, "value"):
            picked = [n.strip() for n in self.values["eval_tasks"].split(",") if n.strip()]
            self.eval_pick = ui.select({**choices, **{n: n for n in picked if n not in choices}}, value=picked,
                                       multiple=True, with_input=True, new_value_mode="add-unique",
                                       label=t("Tasks (or the path of your own .csv/.jsonl set)")) \
                .props("use-chips").classes("w-[36rem]").mark("eval-tasks")
            with ui.row().classes("gap-4 items-center"):
                ui.number(t("Questions per task (0: all)"), min=0, step=1).bind_value(self.values, "eval_limit") \
                    .classes("w-56").mark("eval-limit")
                ui.radio({"ppl": t("log-likelihood (ppl)"), "gen": t("generation (gen)")}).props("inline") \
                    .bind_value(self.values, "eval_mode").mark("eval-mode")
            ui.label(t("Both runs use the same settings, so the run page can show the difference per task.")) \
                .classes("text-sm opacity-70")

    def nav(self, first: bool = False) -> None:
        with ui.stepper_navigation():
            ui.button(t("Next"), on_click=self.stepper.next).mark("next")
            if not first:
                ui.button(t("Back"), on_click=self.stepper.previous).props("flat")

    def apply(self, preset: dict) -> None:
        for key, value in preset.items():
            if key in self.values:
                self.values[key] = value
        if "eval_tasks" in preset:  # a preset may ask for the before/after evaluation too
            picked = [n.strip() for n in str(preset["eval_tasks"]).split(",") if n.strip()]
            self.eval_pick.set_options({**self.eval_pick.options, **{n: n for n in picked}}, value=picked)
            self.eval_on.set_value(bool(picked))

    def method_changed(self, method: str) -> None:
        self.apply(METHOD_DEFAULTS.get(method, {}))
        self.method_help.set_text(t(METHOD_HELP.get(method, "")))

    async def uploaded(self, e: events.UploadEventArguments) -> None:
        folder = self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(e.file.name).name
        await e.file.save(target)
        self.values["data"] = str(target)
        ui.notify(t("Uploaded to {path}", path=str(target)))

    def model_path(self) -> str:
        model = self.models.get(self.values["model"])
        return model.path if model else self.values["model"]

    async def show_preview(self) -> None:
        """Tokenized in the worker process: the first preview waits for its imports, later ones are quick."""
        self.preview_box.clear()
        with self.preview_box:
            ui.spinner().mark("preview-spinner")
        try:
            self.preview = await io_bound(preview_dataset, self.model_path(), self.values["data"],
                                          self.values["data_format"], self.values["column_map"] or None,
                                          3, int(self.values["seq_len"]))
        except Exception as e:  # the worker's own failure (it died, a broken file it did not expect): say so
            self.preview = DataPreview(error=t("Could not preview: {error}", error=f"{type(e).__name__}: {e}"))
        self.preview_box.clear()
        with self.preview_box:
            if self.preview.error:
                ui.label(self.preview.error).classes("text-negative").mark("preview-error")
                return
            ui.label(t("{rows} rows, format {fmt}. Highlighted tokens are trained; the rest are masked.",
                       rows=self.preview.rows, fmt=self.preview.format)).mark("preview-summary")
            for tokens in self.preview.samples:
                with ui.element("div").classes("w-full font-mono text-xs whitespace-pre-wrap border rounded p-2"):
                    for text, trained in tokens:
                        ui.html(html.escape(text, quote=False), sanitize=False).classes(
                            "inline bg-green-200 text-black" if trained else "inline opacity-50")

    async def estimate(self) -> None:
        v = self.values
        tokens = max(self.preview.rows, 1) * int(v["seq_len"]) * int(v["epochs"])
        try:
            p = await io_bound(vram_plan, self.model_path(), v["method"], int(v["seq_len"]), int(v["batch_size"]),
                               bool(v["grad_checkpointing"]), int(v["lora_r"]), float(self.gpu.value or 80), tokens)
        except (OSError, KeyError, ValueError) as e:
            ui.notify(t("Could not estimate: {error}", error=str(e)), type="warning")
            return
        self.plan_box.clear()
        with self.plan_box:
            ui.label(t("Peak GPU memory ≈ {gib} GiB; ≈ {tps} tokens/s; ≈ {hours} h on an H100-class GPU",
                       gib=p.total_gib, tps=round(p.tokens_per_s), hours=p.hours)).mark("plan-total")
            ui.label(", ".join(f"{k} {v:.2f}" for k, v in p.parts.items())).classes("text-sm opacity-70")
            if not p.fits:
                ui.label(t("It will not fit. Try: {hints}", hints="; ".join(p.suggestions))) \
                    .classes("text-negative").mark("plan-warning")

    async def launch(self) -> None:
        self.values["eval_tasks"] = ",".join(self.eval_pick.value or []) if self.eval_on.value else ""
        params = {k: v for k, v in self.values.items() if v != getattr(self.defaults, k)}
        params["model"] = self.values["model"]
        for name in ("seq_len", "batch_size", "grad_accum", "epochs", "max_steps", "lora_r", "lora_alpha",
                     "save_every", "eval_limit"):
            if name in params and params[name] is not None:
                params[name] = int(params[name])
        try:
            job = await io_bound(api.submit, self.root, "finetune", params)
        except ValueError as e:
            self.error.set_text(str(e))
            return
        ui.navigate.to(f"/finetune/{job.id}")


@ui.page("/finetune")
async def finetune_page():
    root = state.root()
    with frame(t("Finetune")):
        models = await io_bound(list_models, root)
        Wizard(root, models, await io_bound(gpu_memory_gib), await io_bound(eval_task_choices))
        runs = await io_bound(api.list_jobs, root, 20, "finetune")
        if runs:
            ui.label(t("Recent runs")).classes("font-medium")
            with ui.row().classes("gap-3"):
                for job in runs:
                    ui.link(f"#{job.id} {job.status}", f"/finetune/{job.id}")


@ui.page("/finetune/{job_id}")
async def finetune_run_page(job_id: str):
    root = state.root()
    with frame(t("Finetune run")):
        job = await find_job(root, job_id)
        if job is None or job.kind != "finetune":
            ui.label(t("There is no finetune run with id {id}.", id=job_id)).classes("text-lg")
            ui.link(t("Back to the wizard"), "/finetune")
            return
        tools = RunTools(root, job)
        await tools.refresh()
        ui.timer(10.0, tools.refresh)
        if job.params.get("eval_tasks"):
            before_after = EvalBeforeAfter(root, job)
            await before_after.refresh()
            ui.timer(5.0, before_after.refresh)
        others = [j for j in await io_bound(api.list_jobs, root, 20, "finetune") if j.id != job.id]
        compare = CompareRuns(root, job, others)
        await compare.draw()
        await JobView(root, job, details=True, follow_retry=True).start()
