"""The finetune run page's own parts, beside the Jobs detail view it reuses (progress, metric charts, log,
telemetry): checkpoints, merge-and-register, chat with this checkpoint, loss curves of several runs, and the
before/after table of a run that evaluates its base model and its result.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app.finetune_wizard import before_after, checkpoints
from app.queries import loss_curves
from app.tables import Job
from jobs import api
from ui.components.offload import io_bound
from ui.i18n import t


class RunTools(ui.card):
    def __init__(self, root: Path, job: Job):
        super().__init__()
        self.root, self.job = root, job
        self.run_dir = Path(job.params.get("output") or root / "jobs" / str(job.id))
        self.classes("w-full gap-2")
        with self:
            ui.label(t("Checkpoints and outputs")).classes("font-medium")
            self.listing = ui.column().classes("gap-1")
            with ui.row().classes("gap-2"):
                adapter = job.params.get("method", "lora") != "full"
                self.merge_btn = ui.button(t("Merge and register"), icon="merge",
                                           on_click=lambda: self.merge(chat=False)).mark("merge-button")
                self.chat_btn = ui.button(t("Chat with this checkpoint"), icon="chat",
                                          on_click=lambda: self.merge(chat=True)).mark("chat-button")
                self.merge_btn.set_visibility(adapter)
                self.chat_btn.set_visibility(adapter)

    async def refresh(self) -> None:
        names = await io_bound(checkpoints, self.run_dir)
        self.listing.clear()
        with self.listing:
            if not names:
                ui.label(t("No checkpoint yet.")).classes("text-sm opacity-60")
            for name in names:
                ui.label(f"{name}  ·  {self.run_dir / 'checkpoints' / name}").classes("text-sm font-mono")

    async def merge(self, chat: bool) -> None:
        try:
            job = await io_bound(api.submit, self.root, "merge_adapter", {"job": self.job.id})
        except Exception as e:  # bad state or a queue that cannot be written: say which
            ui.notify(t("Could not start the merge: {error}", error=str(e)), type="negative")
            return
        ui.notify(t("Merging as job #{id}; the model appears under Models when done", id=job.id), type="positive")
        ui.navigate.to("/chat" if chat else f"/jobs/{job.id}")


class CompareRuns(ui.card):
    """Overlay the loss curves of chosen finetune jobs."""

    def __init__(self, root: Path, job: Job, others: list[Job]):
        super().__init__()
        self.root = root
        self.classes("w-full gap-2")
        with self:
            ui.label(t("Compare runs")).classes("font-medium")
            options = {j.id: f"#{j.id} {j.params.get('method', '')} {Path(j.params.get('data', '')).name}"
                       for j in [job, *others]}
            self.pick = ui.select(options, value=[job.id], multiple=True, label=t("Runs"),
                                  on_change=self.draw).classes("w-96").mark("compare-select")
            self.chart = ui.echart({"animation": False, "tooltip": {"trigger": "axis"}, "legend": {"top": 0},
                                    "xAxis": {"type": "value", "name": t("step")},
                                    "yAxis": {"type": "value", "scale": True, "name": "loss"}, "series": []})
            self.chart.classes("w-full h-72").mark("compare-chart")

    async def draw(self, *_) -> None:
        curves = await io_bound(loss_curves, self.root, list(self.pick.value or []))
        self.chart.options["series"] = [{"name": f"#{jid}", "type": "line", "showSymbol": False,
                                         "data": [list(p) for p in points]} for jid, points in curves.items()]
        self.chart.update()


STATES = {"pending": "pending", "running": "running", "done": "done", "after-training": "after training",
          "not-run": "not run", "failed": "failed", "cancelled": "cancelled", "interrupted": "interrupted"}


def points(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def delta_text(row: dict) -> str:
    """The difference in points with its standard error, e.g. "+3.2 ± 1.5"."""
    if row["delta"] is None:
        return "—"
    text = f"{100 * row['delta']:+.1f}"
    return text + (f" ± {100 * row['stderr']:.1f}" if row["stderr"] is not None else "")


class EvalBeforeAfter(ui.card):
    """The base model and the result on the tasks the wizard named: per task and metric, both scores, the
    difference in points and its standard error; a side without a number yet says where its eval job is."""

    def __init__(self, root: Path, job: Job):
        super().__init__()
        self.root, self.job_id, self.shown = root, job.id, None
        self.classes("w-full gap-2").mark("before-after")
        with self:
            ui.label(t("Before and after: evaluation of the base model and the result")).classes("font-medium")
            self.body = ui.column().classes("w-full gap-2")

    async def refresh(self) -> None:
        data = await io_bound(before_after, self.root, self.job_id)
        if data == self.shown:
            return  # nothing new: leave the table (and the links a user may be about to click) as they are
        self.shown = data
        self.body.clear()
        with self.body:
            self.draw(data)

    def draw(self, data: dict) -> None:
        sides = data["sides"]
        with ui.row().classes("gap-6 text-sm"):
            for side, label in (("base", t("Base model")), ("result", t("Finetuned model"))):
                info, state = sides[side], t(STATES.get(sides[side]["state"], sides[side]["state"]))
                if info["job_id"]:
                    ui.link(t("{side}: eval job #{id} ({state})", side=label, id=info["job_id"], state=state),
                            f"/jobs/{info['job_id']}").mark(f"eval-link-{side}")
                else:
                    ui.label(f"{label}: {state}").mark(f"eval-state-{side}")
            ui.link(t("All evaluation runs"), "/evaluate")
        ui.label(t("Tasks {tasks} · settings {hash}", tasks=data["tasks"], hash=data["settings_hash"] or "—")) \
            .classes("text-xs opacity-70")
        if not data["rows"]:
            ui.label(t("No scores yet.")).classes("text-sm opacity-60").mark("before-after-empty")
            return
        # a missing score of a side still at work says so; one its finished run lacks is a dash
        waiting = {side: t(STATES[sides[side]["state"]]) if sides[side]["state"] in ("pending", "running",
                                                                                   "after-training") else "—"
                   for side in ("base", "result")}
        with ui.grid(columns=5).classes("gap-x-6 gap-y-1 items-center").mark("before-after-table"):
            for head in (t("Task"), t("Metric"), t("Base model"), t("Finetuned model"), t("Δ points (± s.e.)")):
                ui.label(head).classes("font-medium text-sm")
            for row in data["rows"]:
                key = f"{row['task']}-{row['metric']}"
                ui.label(row["task"]).classes("font-mono text-sm")
                ui.label(row["metric"]).classes("text-sm")
                for side in ("base", "result"):
                    text = points(row[side]) if row[side] is not None else waiting[side]
                    ui.label(text).classes("text-sm").mark(f"score-{side}-{key}")
                significant = row["delta"] is not None and row["stderr"] and abs(row["delta"]) > 2 * row["stderr"]
                color = "" if row["delta"] is None else "text-positive" if row["delta"] > 0 else "text-negative"
                ui.label(delta_text(row)).classes(f"text-sm {color} {'font-bold' if significant else ''}") \
                    .mark(f"delta-{key}")
