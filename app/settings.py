"""One validated settings object, saved as settings.json in the data dir.

The data dir comes from --data-dir, else INKSTONE_HOME, else ~/.inkstone. Every process (launcher, web app,
job consumer, workers, CLI) resolves it the same way, so children inherit it through INKSTONE_HOME.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from engine.netaddr import bind_host

DEFAULT_PORT = 8765
SETTINGS_FILE = "settings.json"


class SettingsError(ValueError):
    """Bad settings: the message names the file and the field."""


class Settings(BaseModel):
    host: str = Field("127.0.0.1", description="Address the web app binds to")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port of the web app")
    access_token: str = Field("", description="Required for every page and API call when set")
    language: Literal["en", "zh"] = Field("en", description="UI language")
    dark_mode: bool = Field(False, description="Dark UI theme")
    telemetry_interval_s: float = Field(3.0, ge=0.5, le=60, description="Seconds between telemetry samples")
    telemetry_retention_h: float = Field(24.0, ge=1, le=24 * 90, description="Hours of full-rate telemetry")
    gpu_jobs_per_gpu: int = Field(1, ge=1, le=8, description="GPU jobs that may share one GPU")
    job_stop_grace_s: float = Field(10.0, ge=0.5, le=600, description="Seconds a cancelled job gets to stop")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return bind_host(v)  # an empty host means loopback, never every interface

    @field_validator("access_token")
    @classmethod
    def _token_length(cls, v: str) -> str:
        if v and len(v) < 8:
            raise ValueError("must be at least 8 characters")
        return v


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Resolve and create the data dir; raises SettingsError when it cannot be written."""
    raw = override or os.environ.get("INKSTONE_HOME") or Path.home() / ".inkstone"
    path = Path(raw).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SettingsError(f"data dir {path} is not writable: {e.strerror or e}") from None
    return path


def load_settings(root: Path) -> Settings:
    path = root / SETTINGS_FILE
    if not path.exists():
        return Settings()
    try:
        return Settings.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise SettingsError(f"{path}: line {e.lineno}: {e.msg}") from None
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SettingsError(f"{path}: field {field!r}: {err['msg']}") from None


def save_settings(root: Path, settings: Settings) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a settings file."""
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".settings-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(settings.model_dump_json(indent=2))
    os.replace(tmp, root / SETTINGS_FILE)
