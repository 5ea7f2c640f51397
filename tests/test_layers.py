"""The import layers hold: engine ← app ← jobs ← {ui, cli, launcher}, engine imports nothing of ours, no cycles.

The contracts live in pyproject.toml ([tool.importlinter]); `lint-imports` checks every import, including the
ones inside functions. A broken contract fails here with import-linter's report of the offending chain.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO


def _lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([exe, "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    r = _lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", r.stdout), r.stdout


def test_a_broken_layer_fails(tmp_path):
    # A copy of the tree with one upward import added: engine importing app must be reported.
    for name in ("engine", "app", "jobs", "ui"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("cli.py", "launcher.py", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "engine" / "upward.py").write_text('"""A deliberate violation."""\n\nimport app.settings\n')
    r = _lint_imports(tmp_path)
    assert r.returncode != 0
    assert "engine.upward -> app.settings" in r.stdout
