"""The process one job runs in: `python -m jobs.worker JOB_ID` (started by jobs.runner).

Its stdout/stderr are the job's log file. It turns the engine's progress callback into job and metric rows
(throttled, so a fast loop does not hammer SQLite), turns SIGTERM into the cooperative cancel flag, and
records the job's own ending: succeeded with a result, cancelled, or failed with the error kept.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from app.db import session
from app.settings import data_dir
from app.tables import Job, Metric
from engine.progress import Cancelled
from jobs import status as st
from jobs.context import JobContext
from jobs.kinds import get_kind
from jobs.transitions import finish

log = logging.getLogger("inkstone.job")


class RowProgress:
    """A Progress that writes the job row at most every `interval` seconds, and every metric point."""

    def __init__(self, root: Path, job_id: int, started: float, interval: float = 0.5):
        self.root, self.job_id, self.started, self.interval = root, job_id, started, interval
        self.fraction, self.message = 0.0, ""
        self._last_write = 0.0
        self._pending: list[Metric] = []

    def __call__(self, fraction=None, message=None, metrics=None, step=None) -> None:
        if fraction is not None:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
        if message:
            self.message = message
            log.info(message)
        if metrics:
            s = int(step) if step is not None else len(self._pending)
            self._pending.extend(Metric(job_id=self.job_id, step=s, name=k, value=float(v))
                                 for k, v in metrics.items())
        if time.monotonic() - self._last_write >= self.interval or self.fraction >= 1.0:
            self.flush()

    def eta(self) -> float | None:
        elapsed = time.time() - self.started
        if self.fraction < 0.01 or elapsed < 1.0:
            return None
        return elapsed * (1 - self.fraction) / self.fraction

    def flush(self) -> None:
        with session(self.root) as s:
            job = s.get(Job, self.job_id)
            job.progress, job.eta_s = self.fraction, self.eta()
            if not job.cancel_requested:
                job.message = self.message
            s.add_all(self._pending)
            s.add(job)
        self._pending = []
        self._last_write = time.monotonic()


def main(job_id: int) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = data_dir()
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    with session(root) as s:
        job = s.get(Job, job_id)
    log.info("job %d (%s) started in pid %d", job_id, job.kind, __import__("os").getpid())
    progress = RowProgress(root, job_id, started=time.time())
    work_dir = root / "jobs" / str(job_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = JobContext(job_id=job_id, root=root, work_dir=work_dir, progress=progress, cancel=cancel)
    try:
        kind = get_kind(job.kind)
        result = kind.load_run()(kind.parse_args(job.params), ctx)
        progress.flush()
        finish(root, job_id, st.SUCCEEDED, result=result or {}, message=progress.message or "done")
        log.info("job %d succeeded", job_id)
        return 0
    except Cancelled:
        progress.flush()
        finish(root, job_id, st.CANCELLED, message="cancelled")
        log.info("job %d cancelled", job_id)
        return 0
    except Exception as e:
        traceback.print_exc()
        progress.flush()
        finish(root, job_id, st.FAILED, error=f"{type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
