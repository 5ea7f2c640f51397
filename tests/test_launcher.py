"""The launcher as a user runs it: real processes, a real HTTP server on loopback, signals."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from engine.ports import free_port
from tests.helpers import REPO, child_env, chromium_page, wait_for


def launch(home, *args, **env):
    return subprocess.Popen([sys.executable, "launcher.py", "--no-browser", *args], cwd=REPO,
                            env=child_env(home, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post_file(url, name, token=None):
    boundary = "inkstone-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: text/plain\r\n\r\nsome data\r\n--{boundary}--\r\n").encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


@pytest.fixture
def running(home):
    port = free_port()
    (home / ".bundled-model-registered").write_text("1")  # no first-start conversion in this test
    proc = launch(home, "--port", str(port))
    lines = []
    wait_for(lambda: lines.append(proc.stdout.readline()) or "Inkstone is at" in lines[-1], 60, what="launch")
    yield proc, port, lines[-1]
    if proc.poll() is None:
        proc.kill()


def test_launch_serves_second_launch_reuses_and_sigterm_stops_all(home, running):
    proc, port, banner = running
    assert f"http://127.0.0.1:{port}" in banner and "first page served" in banner
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}  # no token set: no PID, no data dir
    children = _children(proc.pid)
    assert len(children) == 2  # consumer + web app
    second = launch(home, "--port", str(port))
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 0 and "already running" in out
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    time.sleep(0.5)
    assert all(subprocess.run(["kill", "-0", str(c)], capture_output=True).returncode != 0 for c in children)
    assert not (home / "instance.json").exists()


def test_port_in_use_is_refused_with_a_message(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out, _ = launch(home, "--port", str(s.getsockname()[1])).communicate(timeout=30)
    assert "is in use by another program" in out


def test_non_loopback_host_needs_a_token(home):
    out, _ = launch(home, "--host", "0.0.0.0", "--port", str(free_port())).communicate(timeout=30)
    assert "'0.0.0.0' is not a loopback address: listening there needs an access token" in out


def test_token_guards_pages_api_and_uploads_and_an_empty_host_is_loopback(home):
    port = free_port()
    (home / ".bundled-model-registered").write_text("1")
    (home / "settings.json").write_text(json.dumps({"host": ""}))  # NiceGUI would read "" as every interface
    proc = launch(home, "--host", "", "--port", str(port), INKSTONE_TOKEN="s3cret-token")
    try:
        wait_for(lambda: "Inkstone is at http://127.0.0.1:" in proc.stdout.readline(), 60, what="launch")
        web = next(p for p in psutil.Process(proc.pid).children() if "ui.main" in " ".join(p.cmdline()))
        assert {c.laddr.ip for c in web.net_connections("inet") if c.status == psutil.CONN_LISTEN} == {"127.0.0.1"}
        base = f"http://127.0.0.1:{port}"
        assert json.loads(get(f"{base}/healthz")[1]) == {"status": "ok"}  # the probe stays open, and says no more
        assert json.loads(get(f"{base}/healthz", token="s3cret-token")[1])["data_dir"] == str(home)
        status, body = get(f"{base}/jobs")
        assert status in (401, 303) or "Access token" in body
        assert get(f"{base}/jobs", token="wrong-token")[0] in (401, 303)
        assert get(f"{base}/jobs", token="s3cret-token")[0] == 200
        # An upload must carry the token too: a real upload element of the Datasets page, its URL from the page.
        upload_url = base + re.search(r"/_nicegui/client/[^\"/]+/upload/\d+", get(f"{base}/datasets",
                                                                                  token="s3cret-token")[1])[0]
        assert post_file(upload_url, "stolen.txt")[0] == 401
        assert not (home / "uploads").exists()
        assert post_file(upload_url, "allowed.txt", token="s3cret-token")[0] == 200  # the same request, with it
        wait_for(lambda: (home / "uploads" / "allowed.txt").is_file(), 10, what="the upload with the token")
        assert [p.name for p in (home / "uploads").iterdir()] == ["allowed.txt"]
        static = re.search(r"/_nicegui/[0-9][^\"']*?\.js", get(f"{base}/datasets", token="s3cret-token")[1])[0]
        assert get(base + static)[0] == 200  # NiceGUI's static files stay open (the sign-in page needs them)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium is not installed")
def test_sign_in_form_in_a_real_browser(home):
    port = free_port()
    (home / ".bundled-model-registered").write_text("1")
    proc = launch(home, "--port", str(port), INKSTONE_TOKEN="s3cret-token")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "Inkstone is at" in proc.stdout.readline(), 60, what="launch")
        with chromium_page() as page:
            page.goto(f"{base}/jobs")
            page.wait_for_url(f"{base}/signin")  # no websocket before sign-in: the form must work without one
            page.locator("input[name=token]").fill("s3cret-token")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")
            page.goto(f"{base}/jobs")  # the cookie carries the token from now on
            page.wait_for_url(f"{base}/jobs")
    finally:
        proc.terminate()
        proc.wait(20)
