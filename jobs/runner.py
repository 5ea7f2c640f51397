"""Runs one job inside the consumer: wait for a GPU slot if needed, start the worker process, watch it.

Each job runs in its own process so that cancel can always end it, a crash cannot take the consumer down,
and GPU memory is returned when it exits. Cancel is cooperative first (SIGTERM sets the worker's cancel
flag) and forced after the grace period (SIGKILL). The worker dies with the consumer (PR_SET_PDEATHSIG),
so a killed consumer leaves no orphans; its jobs are marked interrupted at the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from app.db import get_engine, session
from app.procs import die_with_parent
from app.settings import load_settings
from app.tables import Job
from engine.hardware import gpu_count
from jobs import status as st
from jobs.api import _finish

POLL_S = 0.25


def _claim_gpu(root: Path, job_id: int, per_gpu: int, n_gpus: int) -> int | None:
    """Atomically take a GPU slot if this job is the oldest waiting GPU job and a GPU has room."""
    with get_engine(root).connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # one claimer at a time across processes
        older = conn.execute(text(
            "SELECT COUNT(*) FROM job WHERE needs_gpu = 1 AND status = :w AND id < :id"),
            {"w": st.WAITING, "id": job_id}).scalar()
        if older:
            conn.exec_driver_sql("ROLLBACK")
            return None
        busy = dict(conn.execute(text(
            "SELECT gpu_index, COUNT(*) FROM job WHERE status = :r AND gpu_index IS NOT NULL "
            "GROUP BY gpu_index"), {"r": st.RUNNING}).all())
        free = [g for g in range(n_gpus) if busy.get(g, 0) < per_gpu]
        if not free:
            conn.exec_driver_sql("ROLLBACK")
            return None
        gpu = min(free, key=lambda g: busy.get(g, 0))
        conn.execute(text("UPDATE job SET gpu_index = :g, status = :r WHERE id = :id"),
                     {"g": gpu, "r": st.RUNNING, "id": job_id})
        conn.exec_driver_sql("COMMIT")
        return gpu


def _wait_for_gpu(root: Path, job: Job, per_gpu: int) -> int | None | bool:
    """Block until a GPU slot is ours; False when the job was cancelled while waiting."""
    n_gpus = gpu_count()
    if n_gpus == 0:
        return None  # no GPU on this machine: GPU-capable work runs on the CPU like any other job
    with session(root) as s:
        row = s.get(Job, job.id)
        row.status, row.message = st.WAITING, "waiting for a free GPU"
    while True:
        gpu = _claim_gpu(root, job.id, per_gpu, n_gpus)
        if gpu is not None:
            return gpu
        with session(root) as s:
            if s.get(Job, job.id).cancel_requested:
                _finish(root, job.id, st.CANCELLED, message="cancelled while waiting for a GPU")
                return False
        time.sleep(1.0)


def run_job(root: Path, job_id: int) -> None:
    with session(root) as s:
        job = s.get(Job, job_id)
    if job is None or job.status != st.QUEUED:
        return  # cancelled before it started, or already handled
    settings = load_settings(root)
    env = dict(os.environ, INKSTONE_HOME=str(root), PYTHONUNBUFFERED="1")
    if job.needs_gpu:
        gpu = _wait_for_gpu(root, job, settings.gpu_jobs_per_gpu)
        if gpu is False:
            return
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log = Path(job.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.worker", str(job_id)], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=Path(__file__).resolve().parents[1],
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
    with session(root) as s:
        row = s.get(Job, job_id)
        row.status, row.pid, row.started_at = st.RUNNING, proc.pid, time.time()
        row.message = row.message if row.message.startswith("stopping") else "starting"
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
    with session(root) as s:
        job = s.get(Job, job_id)
    if job.status in st.FINAL:
        return  # the worker recorded its own ending
    if job.cancel_requested:
        _finish(root, job_id, st.CANCELLED, message="cancelled (process ended)")
    else:
        _finish(root, job_id, st.FAILED, error=f"worker exited with code {proc.returncode} without a result; "
                f"see the log {job.log_path}")
