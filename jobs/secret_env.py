"""Secrets a job's worker reads from its environment (a server's API key), kept out of the job row.

Job rows are shown on the Jobs page and by `inkstone jobs show`, and copied by retry; a key must not be. The
submitter writes the secrets into the job's folder, readable by the owner only, before the job is queued; the
runner puts them into the worker's environment, so a detached job or one run by another process gets them too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SECRETS_FILE = ".secrets.json"


def _path(root: Path, job_id: int) -> Path:
    return root / "jobs" / str(job_id) / SECRETS_FILE


def write_secrets(root: Path, job_id: int, secrets: dict[str, str]) -> None:
    """Store environment variables for the job's worker (mode 0600, written atomically)."""
    path = _path(root, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secrets, f)
    os.replace(tmp, path)


def read_secrets(root: Path, job_id: int) -> dict[str, str]:
    """The job's stored environment variables ({} when it has none)."""
    try:
        return json.loads(_path(root, job_id).read_text())
    except FileNotFoundError:
        return {}
