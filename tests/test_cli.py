"""The `inkstone` command as a user types it: real subprocesses on a real data dir."""

from __future__ import annotations

import subprocess
import sys

from app.registry import register_folder
from jobs.api import get_job, list_jobs, submit
from tests.helpers import REPO, child_env


def cli(home, *args):
    r = subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, env=child_env(home),
                       capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_models_commands(home, tiny_model_dir):
    folder = tiny_model_dir("mistral")
    code, out = cli(home, "models", "import", str(folder), "--name", "tiny")
    assert code == 0 and "succeeded" in out
    code, out = cli(home, "models", "list")
    assert code == 0 and "tiny" in out and "mistral" in out
    assert cli(home, "models", "path", "tiny") == (0, f"{folder}\n")
    code, out = cli(home, "models", "import", str(home / "nope"))
    assert code == 2 and "does not exist" in out
    code, out = cli(home, "models", "remove", "tiny")
    assert code == 0 and "removed tiny" in out
    code, out = cli(home, "models", "path", "tiny")
    assert code == 2 and "no model 'tiny'" in out


def test_job_kind_runs_inline_without_an_app(home, tiny_model_dir):
    register_folder(home, tiny_model_dir("llama"), name="tiny")
    code, out = cli(home, "selftest", "--model", "tiny", "--max-new-tokens", "4")
    assert code == 0 and "succeeded" in out and '"tokens": 4' in out
    job = list_jobs(home)[0]
    assert job.kind == "selftest" and job.status == "succeeded" and job.params["max_new_tokens"] == 4
    code, out = cli(home, "selftest", "--max-new-tokens", "0")
    assert code == 2 and "max_new_tokens" in out


def test_jobs_commands(home):
    job = submit(home, "selftest", {"max_new_tokens": 3})
    code, out = cli(home, "jobs", "list")
    assert code == 0 and f"{job.id}" in out and "queued" in out
    code, out = cli(home, "jobs", "cancel", str(job.id))
    assert code == 0 and get_job(home, job.id).status == "cancelled"
    code, out = cli(home, "jobs", "retry", str(job.id))
    assert code == 0 and len(list_jobs(home)) == 2
    code, out = cli(home, "jobs", "show", "999")
    assert code == 2 and "no job with id 999" in out
    code, out = cli(home, "selftest", "--help")
    assert code == 0 and "Tokens to generate" in out
