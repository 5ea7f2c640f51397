"""A DeepSpeed op build killed half-way leaves torch's `lock` baton behind; the next run must not wait on it forever."""

from __future__ import annotations

import subprocess
import sys

from engine.train.extensions import extension_builds


def test_a_stale_baton_is_removed_when_no_run_holds_the_folder(tmp_path):
    baton = tmp_path / "cpu_adam" / "lock"
    baton.parent.mkdir()
    baton.touch()
    with extension_builds(tmp_path) as removed:
        assert removed == [baton] and not baton.exists()


def test_a_baton_of_a_live_run_is_left_alone(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom engine.train.extensions import extension_builds\n"
         f"with extension_builds({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        baton = tmp_path / "cpu_adam" / "lock"  # the other run is building right now
        baton.parent.mkdir()
        baton.touch()
        with extension_builds(tmp_path) as removed:
            assert removed == [] and baton.exists()
    finally:
        holder.kill()
        holder.wait()
    with extension_builds(tmp_path) as removed:  # the holder is gone: now the baton is stale
        assert removed == [baton]
