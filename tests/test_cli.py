"""The `inkstone` command as a user types it: real subprocesses on a real data dir."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.registry import BUNDLED_MARKER, list_models, register_folder
from engine.models.bundled import BUNDLED_NAME
from jobs.api import get_job, list_jobs, submit
from jobs.consumer import consumer_running
from tests.helpers import REPO, child_env, start_consumer, wait_for


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


def test_a_consumer_started_on_its_own_runs_the_cli_job(home, tiny_model_dir, tmp_path):
    register_folder(home, tiny_model_dir("llama"), name="tiny")
    consumer = start_consumer(home, tmp_path / "consumer.log")
    try:
        wait_for(lambda: consumer_running(home), 30, what="consumer")
        code, out = cli(home, "selftest", "--model", "tiny", "--max-new-tokens", "2")
        assert code == 0 and "submitted job" in out and "succeeded" in out  # queued, not run by the CLI itself
    finally:
        consumer.terminate()
        consumer.wait(20)


@pytest.mark.slow  # converts the bundled GGUF (538 MB of safetensors) for real, once
def test_a_fresh_data_dir_lists_and_runs_the_bundled_model(home):
    code, out = cli(home, "models", "list")  # converts the bundled GGUF once, with progress
    assert code == 0 and BUNDLED_NAME in out and "setting up the bundled model" in out
    code, out = cli(home, "models", "list")
    assert code == 0 and BUNDLED_NAME in out and "setting up" not in out
    code, out = cli(home, "selftest", "--max-new-tokens", "2")  # its default model is the bundled one
    assert code == 0 and "succeeded" in out
    code, out = cli(home, "models", "remove", BUNDLED_NAME)
    assert code == 0
    code, out = cli(home, "models", "list")  # removed on purpose: not set up again, and the list says what to do
    assert code == 0 and "no models registered: import one with `inkstone models import PATH`" in out


def test_a_job_finds_the_bundled_model_without_a_setup_step(home, bundled_model_dir):
    # The converted folder is already there (the conversion itself is tested above): registration is lazy.
    (home / "models").mkdir()
    (home / "models" / BUNDLED_NAME).symlink_to(bundled_model_dir)
    assert list_models(home) == [] and not (home / BUNDLED_MARKER).exists()
    code, out = cli(home, "selftest", "--max-new-tokens", "2")
    assert code == 0 and "succeeded" in out
    assert [(m.name, m.source) for m in list_models(home)] == [(BUNDLED_NAME, "bundled")]
