"""The consumer process: `python -m jobs.consumer` (started by the launcher, or by hand).

Before taking work it marks jobs left running by a dead consumer as interrupted. Workers are threads: each
one only watches a job's own process, so threads cost nothing while GPU jobs wait in line for a slot.
"""

from __future__ import annotations

import argparse
import logging

from huey.consumer import Consumer

from app.procs import end_job_processes
from app.settings import data_dir
from jobs.api import recover_interrupted
from jobs.kinds import _load_builtin_kinds
from jobs.queue import get_huey


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run Inkstone's job consumer")
    p.add_argument("--data-dir", help="data dir (default: INKSTONE_HOME or ~/.inkstone)")
    p.add_argument("--workers", type=int, default=8, help="jobs that may run or wait at once")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s consumer %(levelname)s: %(message)s")
    root = data_dir(args.data_dir)
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


if __name__ == "__main__":
    main()
