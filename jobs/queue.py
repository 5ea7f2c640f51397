"""The huey instance: SqliteHuey in its own file (queue.db), apart from the app database to avoid lock
contention. One task, run_job, carries a job id; the job row holds everything else."""

from __future__ import annotations

import functools
from pathlib import Path

from huey import SqliteHuey

QUEUE_FILE = "queue.db"


@functools.cache
def get_huey(root: Path) -> SqliteHuey:
    huey = SqliteHuey("inkstone", filename=str(root / QUEUE_FILE), results=False, utc=True)

    @huey.task(name="run_job")
    def run_job(job_id: int) -> None:
        from jobs.runner import run_job as run

        run(root, job_id)

    huey.run_job = run_job
    return huey
