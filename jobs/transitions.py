"""Every change of a job row's state, in one place: the API, the runner, the worker and the consumer use these.

Keeping the transitions apart from `jobs.api` lets the runner and the worker record a job's end without
importing the submit side (which enqueues into huey, whose task calls the runner): the imports point one way.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlmodel import select

from app.db import session
from app.errors import NotFound
from app.tables import Job
from jobs import status as st


def finish(root: Path, job_id: int, status: str, *, error: str = "", message: str | None = None,
           result: dict | None = None) -> None:
    """End a job: its final status, the time, and an error, message or result when given."""
    with session(root) as s:
        job = s.get(Job, job_id)
        job.status, job.finished_at = status, time.time()
        if error:
            job.error = error
        if message is not None:
            job.message = message
        if result is not None:
            job.result = result
        if status == st.SUCCEEDED:
            job.progress, job.eta_s = 1.0, 0.0
        s.add(job)


def request_cancel(root: Path, job_id: int) -> Job:
    """A queued job is cancelled at once; a running or waiting one is flagged, and its runner stops it."""
    with session(root) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        if job.status in st.FINAL:
            raise ValueError(f"job {job_id} is already {job.status}")
        if job.status == st.QUEUED:
            job.status, job.finished_at, job.message = st.CANCELLED, time.time(), "cancelled before it started"
        else:
            job.cancel_requested = True
            job.message = "stopping…"
        s.add(job)
    return job


def mark_waiting(root: Path, job_id: int, gpus: int) -> None:
    """The job waits in line for its GPU slots."""
    with session(root) as s:
        row = s.get(Job, job_id)
        row.status, row.message = st.WAITING, f"waiting for {gpus} free GPU(s)"


def mark_running(root: Path, job_id: int, pid: int) -> None:
    """The job's worker process has started."""
    with session(root) as s:
        row = s.get(Job, job_id)
        row.status, row.pid, row.started_at = st.RUNNING, pid, time.time()
        row.message = row.message if row.message.startswith("stopping") else "starting"


def recover_interrupted(root: Path) -> list[int]:
    """Mark jobs left running or waiting by a dead consumer as interrupted (they can be retried)."""
    with session(root) as s:
        stale = s.exec(select(Job).where(Job.status.in_([st.RUNNING, st.WAITING]))).all()
        ids = []
        for job in stale:
            job.status, job.finished_at = st.INTERRUPTED, time.time()
            job.message = "interrupted: its worker died (consumer stopped, crash or power loss); retry it"
            s.add(job)
            ids.append(job.id)
    return ids
