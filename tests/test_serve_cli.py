"""`inkstone serve MODEL` as a user runs it: a job that serves the OpenAI API until Ctrl-C (or `kill`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import openai
import pytest
from openai import OpenAI

from app.registry import register_folder
from engine.ports import free_port
from jobs import status as st
from jobs.api import cancel, get_job, job_metrics, list_jobs
from tests.helpers import REPO, child_env, start_consumer, wait_for


def _healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
    except OSError:
        return False


def _as_a_terminal_starts_it() -> None:
    # A shell starts a foreground command with SIGINT at its default. A test run from a background job
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler, so reset it here.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "kill"])
def test_serve_command_answers_the_openai_client_and_stops_on_a_signal(home, tiny_model_dir, stop_signal):
    register_folder(home, tiny_model_dir("qwen2"), name="tiny")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "tiny", "--port", str(port), "--device", "cpu",
                             "--cpu-kv-cache-gb", "0.05", "--dtype", "float32"], cwd=REPO, env=child_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_as_a_terminal_starts_it)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url) or proc.poll() is not None, 120, what="server")
        assert proc.poll() is None, proc.stdout.read()
        client = OpenAI(base_url=f"{url}/v1", api_key="unused")
        assert [m.id for m in client.models.list()] == ["tiny"]
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "你好"}],
                                               max_tokens=5, temperature=0)
        assert reply.usage.completion_tokens == 5 and reply.choices[0].finish_reason == "length"
        job = list_jobs(home, kind="serve")[0]
        assert job.status == st.RUNNING and job.result["url"] == url and job.params["dtype"] == "float32"
    finally:
        proc.send_signal(stop_signal)
        out, _ = proc.communicate(timeout=60)
    assert "cancelled" in out and proc.returncode == 1
    assert list_jobs(home, kind="serve")[0].status == st.CANCELLED
    assert not _healthy(url)


def test_serve_on_a_public_host_needs_an_api_key(home, tiny_model_dir):
    register_folder(home, tiny_model_dir("qwen2"), name="tiny")
    r = subprocess.run([sys.executable, "-m", "cli", "serve", "tiny", "--host", "0.0.0.0"], cwd=REPO,
                       env=child_env(home), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "API key" in r.stderr


def test_serve_names_a_bad_dtype(home):
    r = subprocess.run([sys.executable, "-m", "cli", "serve", "tiny", "--dtype", "int8"], cwd=REPO,
                       env=child_env(home), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--dtype: invalid choice: 'int8'" in r.stderr


def test_detached_serve_with_an_api_key_runs_in_the_consumer_and_keeps_the_key_out_of_the_row(
        home, tiny_model_dir, tmp_path):
    register_folder(home, tiny_model_dir("qwen2"), name="tiny")
    port = free_port()
    r = subprocess.run([sys.executable, "-m", "cli", "serve", "tiny", "--api-key", "sk-test-key-1", "--detach",
                        "--host", "", "--port", str(port), "--device", "cpu", "--cpu-kv-cache-gb", "0.05",
                        "--dtype", "float32"], cwd=REPO, env=child_env(home), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "submitted job" in r.stdout, r.stdout + r.stderr  # returned at once
    job = list_jobs(home, kind="serve")[0]
    assert job.status == st.QUEUED and "sk-test-key-1" not in json.dumps(job.params)
    consumer = start_consumer(home, tmp_path / "consumer.log")
    url = f"http://127.0.0.1:{port}"  # an empty host means loopback
    try:
        wait_for(lambda: _healthy(url), 120, what="server started by the consumer")
        assert get_job(home, job.id).result["url"] == url
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=f"{url}/v1", api_key="wrong").models.list()
        assert [m.id for m in OpenAI(base_url=f"{url}/v1", api_key="sk-test-key-1").models.list()] == ["tiny"]
        # The server posts its statistics every few seconds: each sample is a new step, not all at step 0.
        wait_for(lambda: len({m.step for m in job_metrics(home, job.id)}) >= 2, 30, what="two metric samples")
        steps = sorted({m.step for m in job_metrics(home, job.id)})
        assert steps[:2] == [1, 2]
    finally:
        cancel(home, job.id)
        wait_for(lambda: get_job(home, job.id).status in st.FINAL, 60, what="server to stop")
        consumer.terminate()
        consumer.wait(20)
