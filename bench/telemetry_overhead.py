"""What the telemetry sampler costs the machine: CPU time of its thread as a share of one core (target < 1%).

The sampler runs in this process, as it does in the web app, on a fresh data dir. Its thread reads its own
CPU time (time.thread_time) after each tick; the steady-state cost leaves out the first tick, which opens and
migrates the database once. As a cross-check, the process's CPU time while sampling is compared with the same
process idling for a while first (the baseline). Retention is timed apart on two days of 3 s rows: its first
pass of a launch thins a whole day, later passes only the last ten minutes.

Run from the repository root: `python -m bench.telemetry_overhead [--seconds 60]`. Appends a dated row to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import psutil
import sqlalchemy
from sqlalchemy import insert
from sqlmodel import func, select

from app import telemetry
from app.db import session
from app.settings import Settings, data_dir
from app.tables import GpuSample, HostSample
from engine.hardware import nvml_status, read_gpus

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nRows appended by the scripts under `bench/`; each runs its own baseline in the same "
    "process.\n\n| date | script | device | software | result |\n|---|---|---|---|---|\n"
)


def process_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def measure_sampler(root: Path, interval: float, seconds: float, idle_s: float) -> dict:
    c0, w0 = process_cpu(), time.monotonic()
    time.sleep(idle_s)
    idle_rate = (process_cpu() - c0) / (time.monotonic() - w0)

    sampler = telemetry.TelemetrySampler(root, interval).start()
    while sampler.thread_cpu_s == 0:  # the first tick: database open + migration + first retention pass
        time.sleep(0.05)
    first_tick_s = sampler.thread_cpu_s
    c0, w0 = process_cpu(), time.monotonic()
    time.sleep(seconds)
    process_rate = (process_cpu() - c0) / (time.monotonic() - w0)
    sampler.stop()
    with session(root) as s:
        ticks = s.exec(select(func.count()).select_from(HostSample)).one()
    per_tick = (sampler.thread_cpu_s - first_tick_s) / (ticks - 1)
    return {"ticks": ticks, "first_tick_ms": first_tick_s * 1000, "per_tick_ms": per_tick * 1000,
            "thread_pct": 100 * per_tick / interval, "process_pct": 100 * (process_rate - idle_rate)}


def measure_retention(root: Path, interval: float, gpus: int) -> dict:
    """Two days of rows at the sampling interval, then a launch's first pass and a later one."""
    now = time.time()
    times = [now - 2 * 86400 + i * interval for i in range(int(2 * 86400 / interval))]
    with session(root) as s:  # bulk inserts: the ORM would take longer than the thing being measured
        s.execute(insert(HostSample), [dict(t=t, cpu_pct=1, ram_used=1, ram_total=2, disk_used=1, disk_total=2)
                                       for t in times])
        s.execute(insert(GpuSample), [dict(t=t, gpu=g, util_pct=1, mem_used=1, mem_total=2, temp_c=1, power_w=1,
                                           sm_clock_mhz=1) for t in times for g in range(gpus)])
    c0 = time.thread_time()
    since = telemetry.apply_retention(root, 24, now=now)
    first = time.thread_time() - c0
    c0 = time.thread_time()
    telemetry.apply_retention(root, 24, now=now + 600, since=since)
    later = time.thread_time() - c0
    with session(root) as s:
        left = s.exec(select(func.count()).select_from(HostSample)).one()
    return {"rows": len(times) * (1 + gpus), "host_rows_left": left, "first_pass_ms": first * 1000,
            "later_pass_ms": later * 1000}


def device() -> str:
    cpu = platform.processor() or platform.machine()
    gpus = ", ".join(g.name for g in read_gpus()) or f"no NVIDIA GPU ({nvml_status()})"
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores; {gpus}"


def append_row(result: str) -> None:
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
        BENCHMARKS_MD.write_text(HEADER)
    software = (f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, psutil {psutil.__version__}, "
                f"SQLAlchemy {sqlalchemy.__version__}")
    with BENCHMARKS_MD.open("a") as f:
        f.write(f"| {datetime.date.today().isoformat()} | bench/telemetry_overhead.py | {device()} | {software} "
                f"| {result} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long the sampler runs")
    parser.add_argument("--idle", type=float, default=10, help="seconds of idle baseline before it")
    args = parser.parse_args()
    interval = Settings().telemetry_interval_s
    with tempfile.TemporaryDirectory(prefix="inkstone-bench-") as tmp:
        s = measure_sampler(data_dir(Path(tmp) / "sampler"), interval, args.seconds, args.idle)
        gpus = max(1, len(read_gpus()))
        r = measure_retention(data_dir(Path(tmp) / "retention"), interval, gpus)
    result = (f"sampler at {interval:g} s: {s['thread_pct']:.3f}% of one core (thread CPU, {s['per_tick_ms']:.2f} ms "
              f"a tick over {s['ticks']} ticks; first tick {s['first_tick_ms']:.0f} ms); process CPU above idle "
              f"{s['process_pct']:.3f}%; retention on {r['rows']} rows ({gpus} GPU): first pass "
              f"{r['first_pass_ms']:.0f} ms, later pass {r['later_pass_ms']:.1f} ms (host rows "
              f"{r['rows'] // (1 + gpus)} -> {r['host_rows_left']})")
    print(result)
    append_row(result)


if __name__ == "__main__":
    main()
