"""Runs one job inside the consumer: wait for a GPU slot if needed, start the worker process, watch it.

Each job runs in its own process so that cancel can always end it, a crash cannot take the consumer down,
and GPU memory is returned when it exits. Cancel is cooperative first (SIGTERM sets the worker's cancel
flag) and forced after the grace period (SIGKILL). The worker dies with the consumer (PR_SET_PDEATHSIG),
so a killed consumer leaves no orphans; its jobs are marked interrupted at the next start. The worker leads
its own process group and marks its environment: when it ends, whatever it started is killed (app.procs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from app.db import get_engine, session
from app.procs import die_with_parent, end_job_processes, job_env
from app.settings import load_settings
from app.tables import Job
from engine.hardware import gpu_count
from jobs import status as st
from jobs.secret_env import read_secrets
from jobs.transitions import finish, mark_running, mark_waiting

POLL_S = 0.25


def _claim_gpus(root: Path, job_id: int, count: int, per_gpu: int, n_gpus: int) -> list[int] | None:
    """Atomically take `count` GPU slots if this job is the oldest waiting GPU job and enough GPUs have room."""
    with get_engine(root).connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # one claimer at a time across processes
        older = conn.execute(text("SELECT COUNT(*) FROM job WHERE gpus > 0 AND status = :w AND id < :id"),
                             {"w": st.WAITING, "id": job_id}).scalar()
        held = conn.execute(text("SELECT gpu_indices FROM job WHERE status = :r AND gpu_indices != ''"),
                            {"r": st.RUNNING}).scalars()
        busy = Counter(int(g) for indices in held for g in indices.split(","))
        free = sorted((g for g in range(n_gpus) if busy[g] < per_gpu), key=lambda g: (busy[g], g))
        if older or len(free) < count:
            conn.exec_driver_sql("ROLLBACK")
            return None
        gpus = sorted(free[:count])
        conn.execute(text("UPDATE job SET gpu_indices = :g, status = :r WHERE id = :id"),
                     {"g": ",".join(map(str, gpus)), "r": st.RUNNING, "id": job_id})
        conn.exec_driver_sql("COMMIT")
        return gpus


def _wait_for_gpus(root: Path, job: Job, per_gpu: int) -> list[int] | None | bool:
    """Block until the job's GPU slots are ours; None on a machine without GPUs; False when it ended meanwhile."""
    n_gpus = gpu_count()
    if n_gpus == 0:
        return None  # no GPU on this machine: GPU-capable work runs on the CPU like any other job
    if job.gpus > n_gpus:
        finish(root, job.id, st.FAILED, error=f"the job needs {job.gpus} GPUs and this machine has {n_gpus}")
        return False
    mark_waiting(root, job.id, job.gpus)
    while True:
        gpus = _claim_gpus(root, job.id, job.gpus, per_gpu, n_gpus)
        if gpus is not None:
            return gpus
        with session(root) as s:
            if s.get(Job, job.id).cancel_requested:
                finish(root, job.id, st.CANCELLED, message="cancelled while waiting for a GPU")
                return False
        time.sleep(1.0)


def run_job(root: Path, job_id: int) -> None:
    with session(root) as s:
        job = s.get(Job, job_id)
    if job is None or job.status != st.QUEUED:
        return  # cancelled before it started, or already handled
    settings = load_settings(root)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **job_env(root, job_id), **read_secrets(root, job_id))
    if job.gpus:
        gpus = _wait_for_gpus(root, job, settings.gpu_jobs_per_gpu)
        if gpus is False:
            return
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    log = Path(job.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.worker", str(job_id)], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=Path(__file__).resolve().parents[1],
            preexec_fn=die_with_parent if sys.platform == "linux" else None, start_new_session=True,
        )
    mark_running(root, job_id, proc.pid)
    _watch(root, job_id, proc, settings.job_stop_grace_s)


def _watch(root: Path, job_id: int, proc: subprocess.Popen, grace_s: float) -> None:
    term_sent_at = None
    while proc.poll() is None:
        time.sleep(POLL_S)
        if term_sent_at is None:
            with session(root) as s:
                if s.get(Job, job_id).cancel_requested:
                    proc.send_signal(signal.SIGTERM)
                    term_sent_at = time.monotonic()
        elif time.monotonic() - term_sent_at > grace_s:
            proc.kill()
    end_job_processes(root, job_id, pgid=proc.pid)  # pool children, launchers, ranks: none outlives the worker
    with session(root) as s:
        job = s.get(Job, job_id)
    if job.status in st.FINAL:
        return  # the worker recorded its own ending
    if job.cancel_requested:
        finish(root, job_id, st.CANCELLED, message="cancelled (process ended)")
    elif proc.returncode < 0:  # killed from outside (kill -9, the OOM killer): retrying it is the remedy
        finish(root, job_id, st.INTERRUPTED, message=f"interrupted: its worker was killed by "
               f"{signal.Signals(-proc.returncode).name}; retry it")
    else:
        finish(root, job_id, st.FAILED, error=f"worker exited with code {proc.returncode} without a result; "
                f"see the log {job.log_path}")
