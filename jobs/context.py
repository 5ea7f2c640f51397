"""What a running job's task is handed: its id, data dir, work folder, progress callback and cancel flag."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from engine.progress import Progress


@dataclass
class JobContext:
    job_id: int
    root: Path  # the data dir
    work_dir: Path  # this job's own folder (outputs, checkpoints)
    progress: Progress
    cancel: threading.Event
