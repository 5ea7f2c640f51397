"""The processes of a job, found and ended as one: no process a job started may outlive its worker or consumer.

A job's worker leads a process group of its own, and its environment carries the job's mark (its id beside the
data dir), which every process it starts inherits, also the ones that leave the group (torchrun starts each
rank in a session of its own). When the worker ends, however it ends, the runner kills the group and every
marked process; a consumer that starts after a crash does the same for the jobs it marks interrupted.
The children themselves also die with their parent (engine.procs), so nothing waits for that sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from engine.procs import die_with_parent

__all__ = ["JOB_ENV", "die_with_parent", "end_job_processes", "job_env", "job_processes"]

JOB_ENV = "INKSTONE_JOB_ID"


def job_env(root: Path, job_id: int) -> dict[str, str]:
    """The environment entries that mark a job's worker and everything it starts."""
    return {"INKSTONE_HOME": str(root), JOB_ENV: str(job_id)}


def job_processes(root: Path, job_id: int) -> list[int]:
    """Pids of the live processes that carry job_id's mark (Linux /proc; our own user's processes only)."""
    mark = {f"{k}={v}".encode() for k, v in job_env(root, job_id).items()}
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    env = set(f.read().split(b"\0"))
            except OSError:  # gone meanwhile, or another user's
                continue
            if mark <= env:
                found.append(int(entry.name))
    return found


def end_job_processes(root: Path, job_id: int, pgid: int | None = None) -> list[int]:
    """SIGKILL what is left of a job: its worker's process group (when known) and every marked process."""
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    killed = []
    for pid in job_processes(root, job_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
