"""Find or start the model server of a registered model (a `serve` job), for the Chat and Agent pages.

A server is a job, so looking one up belongs with the jobs: pages ask here rather than query job rows.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from app.db import session
from app.tables import Job
from jobs import status as st
from jobs.api import cancel, submit


def running_servers(root: Path) -> dict[str, Job]:
    """Active serve jobs by model name (newest wins)."""
    with session(root) as s:
        jobs = s.exec(select(Job).where(Job.kind == "serve", Job.status.in_(st.ACTIVE)).order_by(Job.id)).all()
    return {j.params.get("model", j.result.get("model", "")): j for j in jobs}


def server_for(root: Path, model: str) -> Job | None:
    return running_servers(root).get(model)


def ensure_server(root: Path, model: str, device: str = "auto") -> Job:
    """The serve job of `model`, starting one if none is queued or running."""
    job = server_for(root, model)
    if job is None:
        job = submit(root, "serve", {"model": model, "device": device}, title=f"Serve {model}")
    return job


def stop_server(root: Path, model: str) -> Job | None:
    job = server_for(root, model)
    return cancel(root, job.id) if job else None
