"""The two things every long engine entry point is handed: a progress callback and a cancel flag.

The engine knows nothing of jobs or SQLite; a job runner, the CLI or a notebook passes whatever suits it.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Progress(Protocol):
    def __call__(
        self,
        fraction: float | None = None,
        message: str | None = None,
        metrics: dict[str, float] | None = None,
        step: int | None = None,
    ) -> None: ...


class Cancelled(Exception):
    """Raised by an entry point that noticed its cancel flag and stopped cooperatively."""


def no_progress(fraction=None, message=None, metrics=None, step=None) -> None:
    """A Progress that drops everything, for callers that do not care."""


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
