"""The engine core process: it never outlives the server (clean stop, or the server killed with SIGKILL), a core
that dies turns requests into 503s that say so instead of hanging, a model that fails to load is a plain error,
and an idle core sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.serve.conftest import SERVED_NAME, start_core, start_server

REPO = Path(__file__).resolve().parents[2]


def until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def gone(pid: int) -> bool:
    """True once pid has exited (a zombie waiting for its reaper counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_the_core_stops_with_the_server_and_sleeps_when_idle(tiny_model_dir):
    thread, served = start_server(tiny_model_dir("llama"))
    pid = served.engine.pid
    try:
        client = openai.OpenAI(base_url=served.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
        reply = client.completions.create(model=SERVED_NAME, prompt="hello", max_tokens=3,
                                          extra_body={"ignore_eos": True})
        assert reply.usage.completion_tokens == 3
        assert pid != os.getpid() and not gone(pid)
        time.sleep(0.3)
        before = cpu_ticks(pid)
        time.sleep(1.0)
        assert cpu_ticks(pid) - before <= 5, "an idle core must block on its pipe, not poll"  # ticks of 10 ms
    finally:
        thread.stop()
    assert until(lambda: gone(pid), timeout=30), "the core outlived the server"
    assert served.engine.process.returncode == 0, "a clean stop is a clean exit"


def test_a_dead_core_gives_503s_that_say_so(tiny_model_dir):
    thread, served = start_server(tiny_model_dir("llama"))
    try:
        base = served.base_url
        body = {"model": SERVED_NAME, "prompt": "go", "max_tokens": 400, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", base + "/v1/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: {")
            os.kill(served.engine.pid, signal.SIGKILL)
            rest = [line for line in lines if line.startswith("data: ")]
        assert any("engine core process is not running" in line for line in rest), rest[-3:]
        health = httpx.get(base + "/health", timeout=30)
        assert health.status_code == 503 and "engine core" in health.json()["error"]["message"]
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=3)
        assert err.value.status_code == 503 and "killed by signal 9" in err.value.message
        assert httpx.get(base + "/v1/models", timeout=30).status_code == 200, "what needs no engine still works"
    finally:
        thread.stop()


def test_a_model_that_does_not_load_is_a_plain_error(tmp_path):
    with pytest.raises(RuntimeError, match=f"could not load {tmp_path}"):
        start_core(tmp_path)


SERVE = ("import sys; from engine.serve.server import ServeArgs, run_server; "
         "run_server(ServeArgs(model_path=sys.argv[1], served_model_name='m', port=int(sys.argv[2]), device='cpu', "
         "dtype='float32', max_model_len=256, cpu_kv_cache_gb=0.01, enforce_eager=True))")


def test_the_core_dies_when_the_server_process_is_killed(tiny_model_dir, tmp_path):
    from engine.ports import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(tiny_model_dir("llama")), str(port)], cwd=REPO,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        assert until(healthy, timeout=180), "the server did not come up"
        [core] = children(server.pid)
        assert not gone(core)
        server.kill()
        server.wait(timeout=30)
        assert until(lambda: gone(core), timeout=30), "the core outlived a killed server"
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
