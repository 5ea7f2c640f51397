"""run_server as a job runs it: progress messages, a real port, a clean return on cancel; refusals."""

from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import openai
import pytest

from engine.serve import ServeArgs, run_server
from engine.serve.server import check_args


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.com", "::"])
def test_non_loopback_host_needs_an_api_key(host):
    with pytest.raises(ValueError, match="api_key"):
        run_server(ServeArgs(model_path="/does/not/matter", host=host))
    check_args(ServeArgs(model_path="/x", host=host, api_key="sk-1"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_key(host):
    check_args(ServeArgs(model_path="/x", host=host))


def small_args(model_dir, **overrides) -> ServeArgs:
    args = dict(model_path=str(model_dir), served_model_name="tiny", port=0, device="cpu", dtype="float32",
                max_model_len=256, cpu_kv_cache_gb=0.01)
    args.update(overrides)
    return ServeArgs(**args)


def test_run_server_listens_then_returns_on_cancel(tiny_model_dir):
    messages: list[str] = []
    cancel = threading.Event()
    outcome: list[BaseException | None] = []

    def progress(fraction=None, message=None, metrics=None, step=None):
        if message:
            messages.append(message)

    def job():
        try:
            run_server(small_args(tiny_model_dir("qwen2")), progress, cancel)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not any(m.startswith("listening on") for m in messages):
        assert thread.is_alive() and time.monotonic() < deadline, (messages, outcome)
        time.sleep(0.05)
    url = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)", messages[-1]).group(1)
    assert messages[0].startswith("loading ")
    assert httpx.get(url + "/health", timeout=30).json() == {"status": "ok"}
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert reply.usage.completion_tokens == 3
    cancel.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and outcome == [None]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=5)


def test_port_in_use_fails_before_loading_the_model():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"could not listen on 127.0.0.1:{port}"):
            run_server(ServeArgs(model_path="/not/loaded", port=port))
