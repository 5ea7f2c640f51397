"""The Agent playground in a real browser (Playwright driving Debian's chromium), everything real: the web app as
its own process on loopback, the bundled model served by `inkstone serve` in another, the Python tool in the
sandbox. A run with the Python tool set to "ask" and its first turn forced to call it pauses with an approval
prompt showing the exact arguments; approved, the run ends and is listed; it is rated, selected and exported,
and the dataset is registered in the SQLite store with lineage to the run.

Every wait is on a condition (an element, a row in the store), never a sleep. The model decodes greedily, and
the forced call is decoded under the server's tool-call grammar, so it always writes a valid call.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlmodel import select

from app import agents
from app.db import session
from app.registry import BUNDLED_MARKER, register_folder
from app.tables import Dataset
from engine.models.bundled import BUNDLED_NAME
from engine.ports import free_port
from jobs import status as st
from jobs.servers import server_for
from tests.helpers import REPO, child_env, chromium_page, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed (installer/install.sh "
                       "installs it where it can; CI always does)"),
]
QUESTION = "Run this Python code: print(2 + 3)"
CODE_LIMIT = "12"  # the server's grammar closes the code string there; unbounded, a 135M model never ends it


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start(args: list[str], home, log_name: str) -> subprocess.Popen:
    log = (home / log_name).open("wb")
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=child_env(home), stdout=log,
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def playground(home, bundled_model_dir):
    """The bundled model registered and served (`inkstone serve`, a job in its own process), and the web app."""
    register_folder(home, bundled_model_dir, name=BUNDLED_NAME, source="bundled")
    (home / BUNDLED_MARKER).write_text("1")
    model_port, web_port = free_port(), free_port()
    server = start(["-m", "cli", "serve", BUNDLED_NAME, "--port", str(model_port), "--device", "cpu",
                    "--dtype", "float32", "--cpu-kv-cache-gb", "0.2", "--max-model-len", "2048",
                    "--enforce-eager"], home, "serve.log")
    web = start(["-m", "ui.main", "--data-dir", str(home), "--port", str(web_port)], home, "web.log")
    try:
        url = f"http://127.0.0.1:{web_port}"
        wait_for(lambda: answers(f"{url}/healthz") or web.poll() is not None, 90, what="the web app")
        assert web.poll() is None, (home / "web.log").read_text()

        def serving() -> bool:
            assert server.poll() is None, (home / "serve.log").read_text()
            job = server_for(home, BUNDLED_NAME)  # the playground finds the server the same way
            return job is not None and job.status == st.RUNNING and answers(f"{job.result.get('url')}/health")

        wait_for(serving, 300, interval=0.5, what="the model server")
        yield url
    finally:
        stop(web)
        stop(server)


def test_approve_a_forced_python_call_then_rate_and_export_the_run(home, playground):
    with chromium_page(60_000) as page:
        page.goto(f"{playground}/agents")
        page.get_by_text("No runs yet.").wait_for()
        page.locator(".q-checkbox").filter(has_text="python").click()  # its policy is "ask" unless changed
        page.get_by_label("Longest Python code per call (characters, 0: no limit)").fill(CODE_LIMIT)
        page.get_by_label("First turn (function calling)").click()
        page.get_by_role("option", name="must call python").click()
        page.get_by_label("Question").fill(QUESTION)
        page.get_by_role("button", name="Run", exact=True).click()

        approval = page.get_by_test_id("approval")
        approval.wait_for(timeout=300_000)  # the first turn: a forced call decoded by the 135M model on the CPU
        assert "The agent wants to run python with these arguments:" in approval.inner_text()
        shown = json.loads(page.get_by_test_id("approval-arguments").locator("pre").inner_text())
        assert set(shown) == {"code"} and 0 < len(shown["code"]) <= int(CODE_LIMIT)
        page.get_by_role("button", name="Approve once").click()
        approval.wait_for(state="hidden")

        ended = page.get_by_text("Ended: ")
        ended.wait_for(timeout=300_000)
        run = wait_for(lambda: agents.list_runs(home), 30, what="the run stored")[0]
        first = run.trace["steps"][0]
        assert first["tool"] == "python" and first["arguments"] == shown  # exactly what was approved ran
        assert run.question == QUESTION and run.status == "answered", run.trace
        row = page.get_by_test_id(f"run-{run.id}")
        row.wait_for()

        row.locator(".q-select").click()
        page.get_by_role("option", name="★★★★★", exact=True).click()
        wait_for(lambda: agents.get_run(home, run.id).rating == 5, 30, what="the rating saved")

        row.locator(".q-checkbox").click()
        page.get_by_label("Dataset name").fill("browser-agent-runs")
        page.get_by_role("button", name="Export selected runs as a dataset").click()
        page.get_by_text("Dataset browser-agent-runs written with 1 runs.").wait_for()

    with session(home) as s:
        dataset = s.exec(select(Dataset).where(Dataset.name == "browser-agent-runs")).one()
    assert dataset.inputs == [f"agent_run:{run.id}"] and dataset.format == "messages" and dataset.rows == 1
    record = json.loads(Path(dataset.path).read_text(encoding="utf-8"))
    call = record["messages"][1]["tool_calls"][0]["function"]
    assert call["name"] == "python" and json.loads(call["arguments"]) == shown
    offered = [tool["function"]["name"] for tool in record["tools"]]
    assert offered == ["calculator", "python"]  # calculator is on by default
