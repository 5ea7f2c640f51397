"""`inkstone eval` as a user runs it, in a process with no network at all (`unshare -rn`): the eval job runs on
the bundled model from the wheel data, writes --output JSON and stores its run, results and samples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from app import evals
from tests.helpers import REPO, child_env


def _no_network_prefix() -> list[str]:
    if not shutil.which("unshare"):
        pytest.skip("unshare is not available")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged network namespaces are not allowed here: {probe.stderr.decode().strip()}")
    return ["unshare", "-rn"]


def cli_module() -> str:
    return "cli" if (REPO / "cli.py").exists() else "app.cli"


def test_eval_runs_offline_and_stores_results(home, bundled_model_dir, tmp_path):
    out = tmp_path / "results.json"
    cmd = [*_no_network_prefix(), sys.executable, "-m", cli_module(), "eval", str(bundled_model_dir),
           "--tasks", "arc_easy,mmlu_anatomy", "--split", "validation", "--shots", "1", "--limit", "3",
           "--dtype", "float32", "--device", "cpu", "--output", str(out)]
    env = child_env(home, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"arc_easy", "mmlu_anatomy"}
    assert 0.0 <= doc["results"]["arc_easy"]["acc"] <= 1.0 and "acc_norm_stderr" in doc["results"]["arc_easy"]
    assert doc["settings"]["shots"] == 1 and doc["settings"]["split"] == "validation"
    [run] = evals.list_runs(home)
    assert run.status == "done" and run.job_id is not None
    rows = evals.results(home, [run.id])
    assert {(r.task, r.metric) for r in rows} >= {("arc_easy", "acc"), ("mmlu_anatomy", "acc_norm")}
    assert all(r.n == 3 for r in rows)
    assert len(evals.samples(home, run.id, "mmlu_anatomy")) == 3
    columns, table = evals.results_table(home, [run.id])
    assert table[0]["dataset"] == "arc_easy" and columns[0] in table[0]
