"""The web process's helper worker (app/worker_pool.py) never outlives it, however the web process ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from tests.conftest import REPO
from tests.helpers import wait_for

PARENT = """
import os, sys, time
from app import worker_pool
print(worker_pool.run(os.getpid), flush=True)  # the worker's pid, from inside it
time.sleep(120)
"""


def test_a_worker_goes_when_its_web_process_is_killed_outright():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        worker = psutil.Process(int(parent.stdout.readline()))
        assert worker.ppid() == parent.pid
        parent.send_signal(signal.SIGKILL)  # no shutdown handler runs
        parent.wait(30)
        wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 30,
                 what="the worker to exit after its parent was killed")
    finally:
        parent.kill()
        parent.wait()
