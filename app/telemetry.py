"""Host and GPU telemetry: a background sampler that writes rows, retention that keeps the table small, and the
bucketed series the charts read.

Why rows in the app database rather than an in-memory ring: the Jobs page charts a finished job's span long
after the fact, and any process (web app, CLI) reads the same history. The sampler is a daemon thread in the
web app; one tick costs a few psutil/NVML calls and one small transaction (measured in
bench/telemetry_overhead.py). Host and GPU rows of one tick share the same `t`, so "the latest GPU readings"
is simply the rows at the newest `t`.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import NamedTuple

import psutil
from sqlalchemy import text
from sqlmodel import select

from app.db import session
from app.settings import load_settings
from app.tables import GpuSample, HostSample
from engine.hardware import nvml_status, read_gpus

log = logging.getLogger(__name__)

MAX_AGE_S = 30 * 24 * 3600  # rows older than this are deleted outright
THIN_BUCKET_S = 60  # past the full-rate retention, keep one row per minute (per GPU)
RETENTION_EVERY_S = 600


class HostPoint(NamedTuple):
    t: float
    cpu_pct: float
    ram_used: float
    ram_total: float
    disk_used: float
    disk_total: float


class GpuPoint(NamedTuple):
    t: float
    util_pct: float
    mem_used: float
    mem_total: float
    temp_c: float
    power_w: float
    sm_clock_mhz: float


class TelemetrySampler:
    """Records one host row and one row per GPU every interval_s seconds, until stop()."""

    def __init__(self, root: Path, interval_s: float = 3.0):
        self.root = Path(root)
        self.interval_s = interval_s
        self.thread_cpu_s = 0.0  # CPU time the sampler thread has used (read by the benchmark)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-sampler", daemon=True)
        self._thinned_until = 0.0  # rows before this were already thinned; the next pass starts here

    def start(self) -> TelemetrySampler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Wake the thread and join it; whether it ended within timeout seconds."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def sample_once(self) -> None:
        """Read the host and every GPU, then write all rows in one transaction."""
        t = time.time()
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.root))
        # RAM "used" as total - available: what a new process (a model load) can no longer get.
        host = HostSample(t=t, cpu_pct=psutil.cpu_percent(interval=None), ram_used=mem.total - mem.available,
                          ram_total=mem.total, disk_used=disk.used, disk_total=disk.total)
        gpus = [GpuSample(t=t, gpu=g.index, name=g.name, util_pct=g.util_pct, mem_used=g.mem_used,
                          mem_total=g.mem_total, temp_c=g.temp_c, power_w=g.power_w, sm_clock_mhz=g.sm_clock_mhz)
                for g in read_gpus()]
        with session(self.root) as s:
            s.add(host)
            s.add_all(gpus)

    def _run(self) -> None:
        psutil.cpu_percent(interval=None)  # primes this thread's CPU counter; the first tick then reads a real %
        next_tick = time.monotonic() + self.interval_s
        next_retention = 0.0
        # Event.wait, not sleep: stop() wakes the thread at once.
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += self.interval_s
            try:
                self.sample_once()
            except Exception:  # a full disk or a locked database must not end telemetry for the session
                log.exception("telemetry sample failed")
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + RETENTION_EVERY_S
                try:
                    # Read the setting each pass, so a change on the Settings page applies without a restart.
                    retention_h = load_settings(self.root).telemetry_retention_h
                    self._thinned_until = apply_retention(self.root, retention_h, since=self._thinned_until)
                except Exception:
                    log.exception("telemetry retention failed")
            self.thread_cpu_s = time.thread_time()
            # A tick that overran (a stalled disk) skips the missed ticks instead of bursting to catch up.
            next_tick = max(next_tick, time.monotonic())


def apply_retention(root: Path, retention_h: float, now: float | None = None, since: float = 0.0) -> float:
    """Delete rows older than 30 days and thin rows older than retention_h to one per minute (per GPU).

    Only rows in [since, cutoff) are thinned, so a pass touches about ten minutes of rows through the `t`
    index; returns the cutoff to pass as `since` next time. Thinning keeps the first row of each minute.
    """
    now = time.time() if now is None else now
    cut = now - retention_h * 3600
    lo = max(since, now - MAX_AGE_S) // THIN_BUCKET_S * THIN_BUCKET_S  # whole minutes: no bucket is split
    args = {"old": now - MAX_AGE_S, "lo": lo, "cut": cut, "b": THIN_BUCKET_S}
    with session(root) as s:
        for table, per in (("host_sample", ""), ("gpu_sample", "gpu, ")):
            s.execute(text(f"DELETE FROM {table} WHERE t < :old"), args)
            if lo < cut:
                s.execute(text(
                    f"DELETE FROM {table} WHERE t >= :lo AND t < :cut AND id NOT IN ("
                    f"SELECT MIN(id) FROM {table} WHERE t >= :lo AND t < :cut "
                    f"GROUP BY {per}CAST(t / :b AS INTEGER))"), args)
    return max(cut, since)


def _width(start: float, end: float, max_points: int, bucket_s: float | None) -> float:
    return bucket_s if bucket_s else max((end - start) / max_points, 1e-3)


def host_series(root: Path, start: float, end: float, max_points: int = 600,
                bucket_s: float | None = None) -> list[HostPoint]:
    """Host rows in [start, end) averaged into buckets of (end - start) / max_points seconds (or bucket_s).

    Buckets are aligned to multiples of the width from the epoch, so a live chart that later asks for the
    next span at the same width gets whole buckets that continue the ones it has. Each point sits at the mean
    time of its rows; empty buckets give no point.
    """
    w = _width(start, end, max_points, bucket_s)
    with session(root) as s:
        rows = s.execute(text(
            "SELECT AVG(t), AVG(cpu_pct), AVG(ram_used), MAX(ram_total), AVG(disk_used), MAX(disk_total) "
            "FROM host_sample WHERE t >= :start AND t < :end GROUP BY CAST(t / :w AS INTEGER) ORDER BY 1"),
            {"start": start, "end": end, "w": w}).all()
    return [HostPoint(*r) for r in rows]


def gpu_series(root: Path, start: float, end: float, max_points: int = 600,
               bucket_s: float | None = None) -> dict[int, list[GpuPoint]]:
    """Per-GPU rows in [start, end), bucketed as host_series does; keyed by GPU index."""
    w = _width(start, end, max_points, bucket_s)
    with session(root) as s:
        rows = s.execute(text(
            "SELECT gpu, AVG(t), AVG(util_pct), AVG(mem_used), MAX(mem_total), AVG(temp_c), AVG(power_w), "
            "AVG(sm_clock_mhz) FROM gpu_sample WHERE t >= :start AND t < :end "
            "GROUP BY gpu, CAST(t / :w AS INTEGER) ORDER BY gpu, 2"),
            {"start": start, "end": end, "w": w}).all()
    out: dict[int, list[GpuPoint]] = {}
    for gpu, *values in rows:
        out.setdefault(gpu, []).append(GpuPoint(*values))
    return out


def latest(root: Path) -> tuple[HostSample | None, list[GpuSample]]:
    """The newest host row and the GPU rows of the newest tick (for the current-value cards)."""
    with session(root) as s:
        host = s.exec(select(HostSample).order_by(HostSample.t.desc()).limit(1)).first()
        newest = s.exec(select(GpuSample.t).order_by(GpuSample.t.desc()).limit(1)).first()
        gpus = [] if newest is None else list(
            s.exec(select(GpuSample).where(GpuSample.t == newest).order_by(GpuSample.gpu)))
    return host, gpus


def gpu_inventory() -> tuple[str, list[str]]:
    """('ok' or why NVML is unavailable, the GPU names in index order): what the Telemetry page reports."""
    status = nvml_status()
    return status, [g.name for g in read_gpus()] if status == "ok" else []
