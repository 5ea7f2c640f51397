"""A claim on the folder where DeepSpeed builds its C++ ops, so a build killed half-way cannot hang the next run.

torch's extension loader serialises builds with a bare `lock` file per op (a FileBaton): whoever finds it waits
until it disappears. A build killed with its job (kill -9, a cancelled run) leaves that file behind, and every
later run that needs the op then waits forever. The file carries no owner, so we keep our own: every run holds
a shared flock on the folder while it trains, and a run that can take the flock exclusively knows no one else
is building, so any baton it finds is stale and is removed before its ranks start.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

CLAIM = ".inkstone-runs.lock"


@contextlib.contextmanager
def extension_builds(folder: str | Path) -> Iterator[list[Path]]:
    """Hold a shared claim on `folder` for the block; yields the stale batons removed on the way in."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / CLAIM, "a+") as claim:
        removed: list[Path] = []
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another run holds a claim: its builds may be live, leave every baton alone
        else:
            # torch puts ops at <dir>/<op>/lock (and <dir>/<pyXY_cpu>/<op>/lock without TORCH_EXTENSIONS_DIR)
            for baton in [*folder.glob("*/lock"), *folder.glob("*/*/lock")]:
                baton.unlink(missing_ok=True)
                removed.append(baton)
        fcntl.flock(claim, fcntl.LOCK_SH)
        yield removed
