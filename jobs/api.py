"""Submit, watch, cancel and retry jobs: the functions the UI, the CLI and later stages call.

submit() validates arguments before anything is written, writes the row, then enqueues; a job is never
enqueued without its row, and a row whose enqueue failed is marked failed at once.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from app.db import session
from app.errors import NotFound
from app.tables import Job, Metric
from jobs import status as st
from jobs.kinds import get_kind
from jobs.queue import get_huey
from jobs.secret_env import read_secrets, write_secrets
from jobs.transitions import finish, request_cancel


def log_path(root: Path, job_id: int) -> Path:
    return root / "logs" / f"job-{job_id}.log"


def submit(root: Path, kind: str, params: dict | None = None, *, title: str = "", retry_of: int | None = None,
           model_id: int | None = None, dataset_id: int | None = None, enqueue: bool = True,
           secrets: dict[str, str] | None = None) -> Job:
    """Validate, record and enqueue a job; enqueue=False when the caller runs it itself (CLI without app).

    `secrets` are environment variables for the job's worker (an API key), stored beside the job, not in its row.
    """
    job_kind = get_kind(kind)
    args = job_kind.parse_args(params or {})
    with session(root) as s:
        job = Job(kind=kind, title=title or job_kind.title, params=params or {},
                  gpus=int(job_kind.gpus(args)), retry_of=retry_of,
                  model_id=model_id, dataset_id=dataset_id)
        s.add(job)
        s.flush()
        job.log_path = str(log_path(root, job.id))
    if secrets:
        write_secrets(root, job.id, secrets)
    if not enqueue:
        return job
    try:
        get_huey(root).run_job(job.id)
    except Exception as e:
        finish(root, job.id, st.FAILED, error=f"could not enqueue: {e}")
        raise
    return job


def get_job(root: Path, job_id: int) -> Job:
    with session(root) as s:
        job = s.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def list_jobs(root: Path, limit: int = 100, kind: str | None = None) -> list[Job]:
    with session(root) as s:
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if kind:
            q = q.where(Job.kind == kind)
        return list(s.exec(q).all())


def cancel(root: Path, job_id: int) -> Job:
    """Queued jobs are cancelled at once; running ones are asked to stop, then ended after a grace period."""
    return request_cancel(root, job_id)


def retry(root: Path, job_id: int) -> Job:
    job = get_job(root, job_id)
    if job.status not in (st.FAILED, st.CANCELLED, st.INTERRUPTED):
        raise ValueError(f"job {job_id} is {job.status}; only failed, cancelled or interrupted jobs can be retried")
    return submit(root, job.kind, job.params, title=job.title, retry_of=job.id,
                  model_id=job.model_id, dataset_id=job.dataset_id, secrets=read_secrets(root, job.id))


def job_metrics(root: Path, job_id: int, since_id: int = 0) -> list[Metric]:
    with session(root) as s:
        q = select(Metric).where(Metric.job_id == job_id, Metric.id > since_id).order_by(Metric.id)
        return list(s.exec(q).all())


def log_tail(root: Path, job_id: int, max_bytes: int = 20_000) -> str:
    path = log_path(root, job_id)
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        return f.read().decode("utf-8", errors="replace")
