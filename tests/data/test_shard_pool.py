"""The shard pool under a job worker's SIGTERM handler, for real: many runs never hang (issue 13: forked children
inherited the handler, so the pool's terminate() could not stop one waiting on the queue lock), a cancel ends
every child at once, and a child that dies fails the run instead of leaving it waiting for ever.

Each scenario runs in its own Python process with a hard timeout, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.data.test_pipeline import write_corpus
from tests.helpers import REPO

# As jobs.worker does: SIGTERM only sets the cooperative cancel flag.
PRELUDE = textwrap.dedent("""
    import json, os, signal, sys, threading
    from pathlib import Path
    from engine.data.recipe import parse_recipe
    from engine.data.runner import RunOptions, run_recipe
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    inputs, out = sys.argv[1].split(","), Path(sys.argv[2])
    recipe = parse_recipe({"steps": [{"step": "length", "min_chars": 10}, {"step": "exact_dedup"}]})
""")


def _run(code: str, inputs, out, timeout: float) -> subprocess.CompletedProcess:
    """Run code after PRELUDE in a session of its own, so that a hung run is killed with all its children."""
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), ",".join(map(str, inputs)),
                             str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        raise AssertionError(f"the shard pool hung (no exit within {timeout}s): {stdout}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _inputs(tmp_path, n_files: int) -> list:
    paths = []
    for i in range(n_files):
        paths.append(tmp_path / f"in-{i}.jsonl")
        write_corpus(paths[-1], n=6, seed=i)
    return paths


def test_many_runs_under_a_sigterm_handler_never_hang(tmp_path):
    # 3 workers over 12 one-file shards, 20 times: before the fix about 1 run in 3 hung on 2 busy cores.
    done = _run("""
        for i in range(20):
            m = run_recipe(recipe, RunOptions(inputs, out / str(i), workers=3), cancel=cancel)
            assert m["records_out"] > 0 and not (out / str(i) / ".work").exists()
        print("runs", i + 1)
    """, _inputs(tmp_path, 12), tmp_path / "out", timeout=90)
    assert done.returncode == 0, done.stderr
    assert "runs 20" in done.stdout


def test_cancel_ends_every_shard_worker(tmp_path):
    done = _run("""
        import multiprocessing
        from engine.progress import Cancelled
        def stop(fraction=None, message=None, metrics=None, step=None):
            if message and message.startswith("cleaned"):
                os.kill(os.getpid(), signal.SIGTERM)  # what a job cancel does
        try:
            run_recipe(recipe, RunOptions(inputs, out, workers=3), stop, cancel)
        except Cancelled:
            print("cancelled; children left:", len(multiprocessing.active_children()))
    """, _inputs(tmp_path, 12), tmp_path / "out", timeout=40)
    assert done.returncode == 0, done.stderr
    assert "cancelled; children left: 0" in done.stdout


def test_a_shard_worker_that_dies_fails_the_run(tmp_path):
    # SIGKILL from inside the shard, as the OOM killer would; the lost shard must not be waited for.
    done = _run("""
        import engine.data.shard as shard
        real = shard.process_shard
        def dying(s, *a):
            if s.index == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(s, *a)
        shard.process_shard = dying
        import engine.data.runner as runner
        runner.process_shard = dying
        try:
            run_recipe(recipe, RunOptions(inputs, out, workers=2), cancel=cancel)
        except RuntimeError as e:
            print("failed:", e)
    """, _inputs(tmp_path, 4), tmp_path / "out", timeout=40)
    assert done.returncode == 0, done.stderr
    assert "failed: a shard worker process died" in done.stdout
