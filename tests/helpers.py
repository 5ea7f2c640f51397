"""Small helpers for integration tests: start real processes, wait for conditions."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def until(predicate, timeout: float, what: str):
    """wait_for for page tests: polls without blocking the event loop the app under test runs on."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def one(user, marker: str):
    """The one element of a NiceGUI User page carrying this marker."""
    return next(iter(user.find(marker=marker).elements))


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, and this machine refuses every connection.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def chromium_page(timeout_ms: int = 30_000):
    """A page in headless Debian chromium driven by Playwright; the browser closes on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


def child_env(home: Path, **extra) -> dict:
    env = dict(os.environ, INKSTONE_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def start_consumer(home: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobs.consumer", "--data-dir", str(home)],
                            env=child_env(home), cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT)


@contextlib.contextmanager
def scripted_chat_server(next_reply):
    """An OpenAI-compatible chat server on loopback whose answer to each request is `next_reply(requests so far)`
    (an assistant message): it stands in for the model only, so the client wiring under test is real.
    Yields (base URL without /v1, the list of request bodies received)."""
    import http.server
    import json
    import threading

    requests: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list",
                        "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "test"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            message = next_reply(requests)
            self._send({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "message": message,
                                     "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
