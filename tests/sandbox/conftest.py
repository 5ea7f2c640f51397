"""Sandbox test fixtures: the isolation mode to run under, and directories outside the workspace to attack.

`mode` runs a test under each isolation this machine can give: the namespace sandbox where the kernel allows it,
and always the seccomp + audit-hook fallback (forced through INKSTONE_SANDBOX_ISOLATION), so the fallback that
Ubuntu-style kernels get is tested here too.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from engine.sandbox import isolation
from engine.sandbox.policy import MODE_ENV, _probe, default_hidden, python_paths
from tests.helpers import REPO


def leftovers(workspace) -> list[int]:
    """Processes still running with their cwd in the workspace (a sandboxed program's descendants)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(workspace)):
                found.append(int(pid))
        except OSError:
            continue
    return found


def use_mode(monkeypatch, mode: str | None) -> None:
    if mode is None:
        monkeypatch.delenv(MODE_ENV, raising=False)
    else:
        monkeypatch.setenv(MODE_ENV, mode)
    _probe.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_probe():
    _probe.cache_clear()
    yield
    _probe.cache_clear()


def namespaces_allowed() -> bool:
    _probe.cache_clear()
    allowed = isolation().mode == "namespaces"
    _probe.cache_clear()
    return allowed


@pytest.fixture(params=["namespaces", "seccomp"])
def mode(request, monkeypatch) -> str:
    if request.param == "namespaces" and not namespaces_allowed():
        pytest.skip(f"the kernel refuses namespaces here: {isolation().reason}")
    use_mode(monkeypatch, request.param)
    assert isolation().mode == request.param
    return request.param


@pytest.fixture
def namespaces(monkeypatch) -> str:
    if not namespaces_allowed():
        pytest.skip(f"the kernel refuses namespaces here: {isolation().reason}")
    use_mode(monkeypatch, "namespaces")
    return "namespaces"


@pytest.fixture
def hidden_dir(tmp_path):
    """A directory under /tmp (hidden by default) with a secret file the sandbox must neither read nor delete."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET")
    return outside


def _visible_parent() -> Path:
    """A writable place the sandbox neither hides nor re-exposes as Python's own: the repo's .data unless the
    checkout itself sits in a hidden place (CI may clone under /tmp or a home), else a system folder."""
    hidden, exposed = default_hidden(), python_paths()

    def plain(path: Path) -> bool:
        real = os.path.realpath(path)
        return not any(real == p or real.startswith(p + os.sep) for p in [*hidden, *exposed])

    for parent in (REPO / ".data", Path("/opt"), Path("/var/lib")):
        if plain(parent) and os.access(parent.parent if not parent.exists() else parent, os.W_OK):
            return parent
    pytest.skip("no writable folder outside the sandbox's hidden and Python paths")


@pytest.fixture
def visible_dir():
    """A directory that is not hidden: readable by the sandbox, never writable."""
    path = _visible_parent() / f"inkstone-sandbox-test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("KEEP")
    yield path
    shutil.rmtree(path, ignore_errors=True)
