"""The Evaluate page's contamination panel: pick a run and a registered training dataset, queue a `contamination`
job, and read each task's full score beside its score on the clean items and the contaminated share.

The scan reads a whole training set, so it is a job (progress, cancel, survives a closed tab); the panel polls
the job's row and shows the stored result as soon as it has succeeded, or the job's error when it failed.
"""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app import evals
from app.contamination import clean_vs_full
from app.queries import list_datasets
from jobs import api
from jobs import status as st
from ui.components.offload import io_bound
from ui.i18n import t


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


class ContaminationPanel:
    def __init__(self, root: Path):
        self.root = root
        self.job_id: int | None = None
        with ui.card().classes("w-full"):
            ui.label(t("Contamination check")).classes("text-lg")
            ui.label(t("Benchmark items that share an n-word sequence with a training dataset are contaminated; "
                       "each score is shown again on the clean items only.")).classes("text-xs opacity-70")
            with ui.row().classes("items-end gap-4"):
                self.run = ui.select({}, label=t("Run"), on_change=self.show).classes("w-56").mark("contam-run")
                self.dataset = ui.select({}, label=t("Training dataset"), with_input=True).classes("w-56").mark(
                    "contam-dataset")
                self.n = ui.number(t("n-gram words"), value=13, min=1, max=50, precision=0).classes("w-28").mark(
                    "contam-n")
                ui.button(t("Check"), icon="policy", on_click=self.submit).props("outline").mark("contam-submit")
            self.status = ui.label("").classes("text-sm").mark("contam-status")
            self.table_box = ui.column().classes("w-full")
        ui.timer(2.0, self.poll)

    async def load(self) -> None:
        runs = await io_bound(evals.list_runs, self.root)
        datasets = await io_bound(list_datasets, self.root)
        self.run.set_options({r.id: evals.run_label(r) for r in runs}, value=self.run.value)
        self.dataset.set_options({d.name: d.name for d in datasets}, value=self.dataset.value)

    async def submit(self) -> None:
        self.run.error = self.dataset.error = None
        if self.run.value is None:
            self.run.error = t("Pick a run.")
            return
        if not self.dataset.value:
            self.dataset.error = t("Pick a dataset (register one on the Datasets page).")
            return
        params = {"run": int(self.run.value), "dataset": self.dataset.value, "n": int(self.n.value or 13)}
        try:
            job = await io_bound(api.submit, self.root, "contamination", params)
        except ValueError as e:
            self.dataset.error = str(e)
            return
        self.job_id = job.id
        self.status.set_text(t("Contamination check queued as job #{id}.", id=job.id))

    async def poll(self) -> None:
        if self.job_id is None:
            return
        job = await io_bound(api.get_job, self.root, self.job_id)
        if job.status in st.ACTIVE:
            self.status.set_text(t("Job #{id}: {message}", id=job.id, message=job.message or t(job.status)))
            return
        self.job_id = None
        if job.status == st.SUCCEEDED:
            self.status.set_text(t("Checked against {dataset}.", dataset=job.params.get("dataset", "")))
            await self.show()
        else:
            self.status.set_text(t("Job #{id} {status}: {error}", id=job.id, status=t(job.status), error=job.error))

    async def show(self) -> None:
        self.table_box.clear()
        if self.run.value is None:
            return
        rows = await io_bound(clean_vs_full, self.root, int(self.run.value))
        run = await io_bound(evals.get_run, self.root, int(self.run.value))
        with self.table_box:
            if not rows:
                ui.label(t("This run has not been checked for contamination yet.")).classes("opacity-70")
                return
            checked = (run.settings or {}).get("contamination", {})
            if checked:
                ui.label(t("Checked against {dataset} with {n}-grams.", dataset=checked.get("dataset", ""),
                           n=checked.get("n", ""))).classes("text-xs opacity-70")
            cols = [{"name": k, "label": t(k), "field": k}
                    for k in ("task", "metric", "full", "clean", "delta", "contaminated")]
            ui.table(columns=cols, rows=[
                {"task": r["task"], "metric": r["metric"], "full": _pct(r["full"]), "clean": _pct(r["clean"]),
                 "delta": "—" if r["clean"] is None else f"{100 * (r['clean'] - r['full']):+.2f}",
                 "contaminated": f"{100 * r['contaminated']:.1f}% ({r['contaminated_items']}/{r['items']})"}
                for r in rows]).classes("w-full").mark("contam-table")
