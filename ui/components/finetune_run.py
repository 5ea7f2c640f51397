"""The finetune run page's own parts, beside the Jobs detail view it reuses (progress, metric charts, log,
telemetry): checkpoints, merge-and-register, chat with this checkpoint, and loss curves of several runs.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app.finetune_wizard import checkpoints
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
