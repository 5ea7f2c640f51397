"""The consumer process: `python -m jobs.consumer` (started by the launcher, or by hand).

Before taking work it marks jobs left running by a dead consumer as interrupted. Workers are threads: each
one only watches a job's own process, so threads cost nothing while GPU jobs wait in line for a slot.

While it runs it holds an exclusive lock on `consumer.lock` in the data dir (the file names its pid). The
kernel drops the lock when the process ends, however it ends, so `consumer_running` is true exactly while a
consumer serves this data dir, whoever started it; and a second consumer, which would mark the first one's
running jobs interrupted, refuses to start.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sys
from pathlib import Path
from typing import IO

from huey.consumer import Consumer

from app.procs import end_job_processes
from app.settings import data_dir
from jobs.kinds import _load_builtin_kinds
from jobs.queue import get_huey
from jobs.transitions import recover_interrupted

LOCK_FILE = "consumer.lock"


def _take_lock(root: Path) -> IO | None:
    """The open, locked lock file (keep it open while consuming), or None when another consumer holds it."""
    lock = open(root / LOCK_FILE, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def consumer_pid(root: Path) -> int | None:
    """The pid of the consumer serving the data dir at root, or None when none runs."""
    try:
        lock = open(root / LOCK_FILE)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = lock.read().strip()
            return int(text) if text.isdigit() else -1  # held, its pid not yet written
        fcntl.flock(lock, fcntl.LOCK_UN)
        return None


def consumer_running(root: Path) -> bool:
    return consumer_pid(root) is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run Inkstone's job consumer")
    p.add_argument("--data-dir", help="data dir (default: INKSTONE_HOME or ~/.inkstone)")
    p.add_argument("--workers", type=int, default=8, help="jobs that may run or wait at once")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s consumer %(levelname)s: %(message)s")
    root = data_dir(args.data_dir)
    lock = _take_lock(root)
    if lock is None:
        print(f"inkstone: a job consumer is already running for {root} (pid {consumer_pid(root)})",
              file=sys.stderr)
        return 2
    interrupted = recover_interrupted(root)
    if interrupted:
        logging.info("marked interrupted: %s", interrupted)
    for job_id in interrupted:  # their workers died with the old consumer; nothing they started may live on
        if leftover := end_job_processes(root, job_id):
            logging.info("job %d: killed leftover processes %s", job_id, leftover)
    _load_builtin_kinds()
    consumer = Consumer(get_huey(root), workers=args.workers, worker_type="thread",
                        periodic=False, check_worker_health=True)
    consumer.run()
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
