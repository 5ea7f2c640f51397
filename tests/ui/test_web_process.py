"""The web process as the launcher starts it (`python -m ui.main`), driven by a real browser through every page
and both previews, then stopped the way the launcher stops it (SIGTERM).

Two promises are checked on the running process rather than on the code: torch is never loaded into the web
process (libtorch never appears in its memory map; the previews tokenize in the worker process, whose map
does show it), and a stop runs every shutdown handler to the end (nothing logs "Application shutdown failed",
the preview worker exits; tests/test_telemetry.py shows the same handler joins the sampler).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from app.db import session
from app.registry import BUNDLED_MARKER, register_folder
from app.tables import Dataset
from engine.models.bundled import BUNDLED_NAME
from engine.ports import free_port
from jobs import api
from tests.helpers import REPO, child_env, chromium_page, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed (installer/install.sh "
                       "installs it where it can; CI always does)"),
]
PAGES = ["/", "/models", "/datasets", "/finetune", "/chat", "/evaluate", "/agents", "/export", "/jobs", "/telemetry",
         "/settings"]


def loads_torch(pid: int) -> bool:
    """Whether libtorch is mapped into the process: once imported, torch's libraries stay for its lifetime."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def web(tmp_path_factory, bundled_model_dir):
    """The web process alone on a fresh data dir with the bundled model registered (no consumer: jobs queue)."""
    home = tmp_path_factory.mktemp("inkstone-home")
    register_folder(home, bundled_model_dir, name=BUNDLED_NAME, source="bundled")
    (home / BUNDLED_MARKER).write_text("1")
    port = free_port()
    log = home / "web.log"
    proc = subprocess.Popen([sys.executable, "-m", "ui.main", "--data-dir", str(home), "--port", str(port)],
                            cwd=REPO, env=child_env(home), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url) or proc.poll() is not None, 60, what="the web app")
    assert proc.poll() is None, log.read_text()
    yield home, url, proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def page():
    with chromium_page(60_000) as page:
        yield page


def test_every_page_and_every_preview_leave_torch_out_of_the_web_process(web, page, tmp_path):
    home, url, proc, log = web
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "你好"},
                                             {"role": "assistant", "content": "Hello there"}]}) + "\n",
                    encoding="utf-8")
    job = api.submit(home, "finetune", {"model": BUNDLED_NAME, "data": str(data)}, enqueue=False)
    with session(home) as s:
        dataset = Dataset(name="chat", path=str(tmp_path), rows=1)
        s.add(dataset)
        s.flush()
        dataset_id = dataset.id
    for path in [*PAGES, f"/jobs/{job.id}", f"/finetune/{job.id}", f"/datasets/{dataset_id}"]:
        response = page.goto(url + path)
        assert response.status == 200, path
        page.locator("[data-testid=page-title]").wait_for()  # the frame rendered in the browser

    # The Datasets page's preview: format and first rows of a file.
    page.goto(f"{url}/datasets")
    page.get_by_label("Files or folders on this machine (comma separated)").fill(str(data))
    page.get_by_role("button", name="Preview").first.click()
    page.get_by_text("chat.jsonl: format").wait_for()

    # The Finetune wizard's token-mask preview, twice: the second is served by the worker already running.
    page.goto(f"{url}/finetune")
    page.get_by_role("button", name="Next").first.click()
    page.get_by_label("Training file (.jsonl, .json, .csv, .parquet, .txt)").fill(str(data))
    for _ in range(2):
        page.get_by_role("button", name="Preview").click()
        page.get_by_text("1 rows, format messages").wait_for()
    # The assistant's tokens are marked as trained (waited for: the second preview may still be replacing the first).
    page.locator(".bg-green-200").first.wait_for()

    # The Evaluate page's chat-style prompt preview: the model's own template, rendered by the worker.
    page.goto(f"{url}/evaluate")
    page.get_by_role("combobox", name="Models", exact=True).click()
    page.get_by_role("option", name=BUNDLED_NAME).click()
    page.keyboard.press("Escape")
    page.get_by_role("combobox", name="Prompt style", exact=True).click()
    page.get_by_role("option", name="Chat template").click()
    page.get_by_role("button", name="Preview a prompt").click()
    page.get_by_text("own chat template: exactly what the model reads").wait_for()
    assert "<|im_start|>user" in page.locator(".nicegui-code").first.inner_text()

    assert not loads_torch(proc.pid), "torch was loaded into the web process"
    workers = psutil.Process(proc.pid).children()
    assert workers and any(loads_torch(w.pid) for w in workers), "the preview did not tokenize in a worker"


def test_a_stop_joins_the_sampler_and_ends_the_worker(web):
    home, url, proc, log = web
    workers = psutil.Process(proc.pid).children()
    time.sleep(1.0)  # let the sampler be mid-wait, as it is at any real stop
    before = log.stat().st_size  # only what the stop writes counts (a slow page earlier may have logged)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    out = log.read_bytes()[before:].decode(errors="replace")
    # uvicorn logs a shutdown handler's exception (a sampler not joined raises one) as a failed shutdown.
    assert "shutdown failed" not in out.lower() and "Traceback" not in out, out
    wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 10,
             what="the preview worker to exit")
