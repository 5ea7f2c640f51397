"""One validated settings object, saved as settings.json in the data dir.

The data dir comes from --data-dir, else INKSTONE_HOME, else ~/.inkstone. Every process (launcher, web app,
job consumer, workers, CLI) resolves it the same way, so children inherit it through INKSTONE_HOME.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from engine.netaddr import bind_host

DEFAULT_PORT = 8765
SETTINGS_FILE = "settings.json"


class SettingsError(ValueError):
    """Bad settings: the message names the file and the field."""


SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
ALLOWED_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")


class MCPServerSetting(BaseModel):
    """One MCP server the agents may use: a command (stdio) or a URL (Streamable HTTP)."""

    name: str = Field(description="A short name for the server")
    command: str = Field("", description="stdio: the command line that starts the server")
    url: str = Field("", description="Streamable HTTP: the server's endpoint, e.g. http://127.0.0.1:8000/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="stdio: extra environment variables")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP: headers sent with every request")
    enabled: bool = Field(True, description="Offer this server's tools to the agents")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not SERVER_NAME.match(v):
            raise ValueError("use 1 to 40 letters, digits, '-' or '_', starting with a letter or digit")
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: str) -> str:
        v = v.strip()
        try:
            shlex.split(v)
        except ValueError as e:  # an unclosed quote
            raise ValueError(f"cannot be split into words: {e}") from None
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must start with http:// or https:// and name a host")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return v

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSetting:
        if bool(self.command) == bool(self.url):
            raise ValueError(
                "give either a command (stdio) or a URL (Streamable HTTP), not "
                + ("both" if self.command else "neither")
            )
        return self

    def to_spec(self, tools: list[str] | None = None):
        """The engine's description of the server (engine.agents.mcp_client.MCPServerSpec)."""
        from engine.agents.mcp_client import MCPServerSpec

        return MCPServerSpec(name=self.name, command=self.command, url=self.url, env=self.env or None,
                             headers=dict(self.headers), tools=list(tools or []))


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
    mcp_servers: list[MCPServerSetting] = Field(default_factory=list, description="MCP servers for the agents")
    agent_allowed_hosts: list[str] = Field(default_factory=list,
                                           description="Hosts the agents' http tool may reach")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return bind_host(v)  # an empty host means loopback, never every interface

    @field_validator("mcp_servers")
    @classmethod
    def _unique_names(cls, v: list[MCPServerSetting]) -> list[MCPServerSetting]:
        seen = set()
        for server in v:
            if server.name in seen:
                raise ValueError(f"two servers are called {server.name!r}; give each its own name")
            seen.add(server.name)
        return v

    @field_validator("agent_allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return [check_allowed_host(host) for host in v if host.strip()]

    @field_validator("access_token")
    @classmethod
    def _token_length(cls, v: str) -> str:
        if v and len(v) < 8:
            raise ValueError("must be at least 8 characters")
        return v


def check_allowed_host(host: str) -> str:
    """A host the http tool may reach, normalised; ValueError says what is wrong with it."""
    host = host.strip().lower()
    if not ALLOWED_HOST.match(host):
        raise ValueError(f"{host!r} is not a host: write host, host:port or *.domain (no scheme, no path)")
    return host


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
