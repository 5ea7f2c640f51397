"""The Jobs pages: every job live in one table (/jobs), and one job in full (/jobs/{id}).

The detail page is where a user watches a long run: progress, metrics, log and the machine's telemetry over
the job's time span, and where they walk its lineage (model, dataset, the job it retried, what it produced).
Both views are components (JobTable, JobView) that other pages embed too.
"""

from __future__ import annotations

from nicegui import ui

from app.queries import job_kinds
from ui import state
from ui.components.job_table import JobTable
from ui.components.job_view import JobView
from ui.components.job_widgets import find_job
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t

LIMIT = 100


@ui.page("/jobs")
async def jobs_page():
    root = state.root()
    with frame(t("Jobs")):
        kinds = await io_bound(job_kinds, root)
        with ui.row().classes("items-center gap-4"):
            kind = ui.select({"": t("All kinds"), **{k: k for k in kinds}}, value="", label=t("Kind"))
            kind.classes("w-56").mark("kind-filter")
            ui.label(t("The latest {n} jobs, updated every second.", n=LIMIT)).classes("text-sm opacity-60")
        table = JobTable(root, limit=LIMIT)
        kind.on_value_change(lambda e: table.set_kind(e.value))
        await table.start()


@ui.page("/jobs/{job_id}")
async def job_page(job_id: str):
    root = state.root()
    with frame(t("Job")):
        job = await find_job(root, job_id)
        if job is None:
            ui.label(t("There is no job with id {id}.", id=job_id)).classes("text-lg")
            ui.link(t("Back to all jobs"), "/jobs")
            return
        await JobView(root, job, details=True, follow_retry=True).start()
