"""Double-click entry: start the job consumer and the web app, open the browser, stop both cleanly.

A second launch on the same data dir finds the running instance (instance.json + /healthz) and only opens
the browser. Ctrl-C, closing the terminal (SIGHUP) or SIGTERM stop both children; if either dies, the other
is stopped too so nothing is left half-running.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path

from app.procs import die_with_parent
from app.settings import DEFAULT_PORT, SettingsError, data_dir, load_settings
from engine.netaddr import bind_host, check_bind

INSTANCE_FILE = "instance.json"
REPO = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="inkstone ui", description="Start Inkstone in the browser")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need an access token)")
    p.add_argument("--port", type=int, help=f"port of the web app (default {DEFAULT_PORT})")
    p.add_argument("--data-dir", help="data dir (default: INKSTONE_HOME or ~/.inkstone)")
    p.add_argument("--token", help="access token (or INKSTONE_TOKEN); required for a non-loopback host")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    return p.parse_args(argv)


def health(url: str, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def first_page(url: str, token: str) -> None:
    """Fetch the home page once, so the launch time we print is the time to a served page."""
    req = urllib.request.Request(url + "/", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except OSError as e:
        print(f"inkstone: the first page failed to load ({e})", file=sys.stderr)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def running_instance(root: Path) -> str | None:
    """The URL of a live instance on this data dir: its launcher (named in instance.json) lives and answers."""
    path = root / INSTANCE_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info["url"] if _alive(info.get("pid")) and health(info["url"]) else None


def write_instance(root: Path, info: dict) -> None:
    tmp = root / (INSTANCE_FILE + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, root / INSTANCE_FILE)


def child_env(root: Path, token: str) -> dict:
    env = dict(os.environ, INKSTONE_HOME=str(root), PYTHONUNBUFFERED="1")
    env.pop("PYTEST_CURRENT_TEST", None)  # NiceGUI would look for its screen-test port
    if token:
        env["INKSTONE_TOKEN"] = token
    return env


def stop(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()  # uvicorn closes cleanly; the consumer exits and its job workers die with it
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        root = data_dir(args.data_dir)
        settings = load_settings(root)
    except SettingsError as e:
        print(f"inkstone: {e}", file=sys.stderr)
        return 2
    host, port = bind_host(args.host or settings.host), args.port or settings.port
    token = args.token or os.environ.get("INKSTONE_TOKEN") or settings.access_token
    try:
        check_bind(host, token, "an access token (--token or INKSTONE_TOKEN)")
    except ValueError as e:
        print(f"inkstone: refusing to listen: {e}", file=sys.stderr)
        return 2
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    existing = running_instance(root)
    if existing:
        print(f"Inkstone is already running at {existing}")
        if not args.no_browser:
            webbrowser.open(existing)
        return 0
    if not port_free(host, port):
        print(f"inkstone: port {port} on {host} is in use by another program; choose another with --port",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    env = child_env(root, token)
    # Own sessions: Ctrl-C reaches only the launcher, which stops the children in order; they still die
    # with it if it is killed outright (PR_SET_PDEATHSIG).
    spawn = dict(env=env, cwd=REPO, start_new_session=True,
                 preexec_fn=die_with_parent if sys.platform == "linux" else None)
    procs = [
        subprocess.Popen([sys.executable, "-m", "jobs.consumer", "--data-dir", str(root)], **spawn),
        subprocess.Popen([sys.executable, "-m", "ui.main", "--data-dir", str(root), "--host", host,
                          "--port", str(port)], **spawn),
    ]
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.append(True))
    try:
        while not health(url) and not stopping:
            if any(p.poll() is not None for p in procs):
                print("inkstone: a process failed to start; see the messages above", file=sys.stderr)
                return 1
            time.sleep(0.1)
        if stopping:
            return 0
        first_page(url, token)
        write_instance(root, {"url": url, "pid": os.getpid(), "pids": [p.pid for p in procs]})
        print(f"Inkstone is at {url}  (first page served {time.monotonic() - started:.1f}s after launch; "
              f"data in {root}; Ctrl-C stops it)", flush=True)
        if not args.no_browser:
            webbrowser.open(url + (f"/?token={token}" if token else ""))
        while not stopping:
            if any(p.poll() is not None for p in procs):
                print("inkstone: a process exited; stopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        stop(procs)
        (root / INSTANCE_FILE).unlink(missing_ok=True)
        print("Inkstone stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
