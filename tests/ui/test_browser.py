"""A real browser (Playwright driving Debian's chromium) against the app as the launcher starts it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from app.registry import register_folder
from engine.models.bundled import BUNDLED_NAME
from engine.ports import free_port
from tests.helpers import REPO, child_env, chromium_page, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed (installer/install.sh "
                       "installs it where it can; CI always does)"),
]


@pytest.fixture
def app_url(home, bundled_model_dir):
    # The bundled model as first start would register it (without converting it again for the test).
    register_folder(home, bundled_model_dir, name=BUNDLED_NAME, source="bundled")
    (home / ".bundled-model-registered").write_text("1")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "launcher.py", "--no-browser", "--port", str(port)], cwd=REPO,
                            env=child_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: "Inkstone is at" in proc.stdout.readline(), 60, what="launch")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)


@pytest.fixture
def page():
    with chromium_page(30_000) as page:
        yield page


def test_models_page_then_selftest_to_100_percent(app_url, page):
    page.goto(f"{app_url}/models")
    page.get_by_text(BUNDLED_NAME).first.wait_for()
    assert page.get_by_text("llama").count() >= 1
    page.goto(app_url)
    page.get_by_role("button", name="Run self-test").click()
    page.wait_for_url(f"{app_url}/jobs/*")
    page.locator(".q-linear-progress", has_text="100%").first.wait_for(timeout=180_000)
    page.get_by_text("Succeeded").first.wait_for()
    page.screenshot(path=str(REPO / ".data" / "browser-selftest.png"))
