"""The telemetry sampler, retention and series helpers against a real SQLite file in a fresh data dir."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlmodel import func, select

from app import telemetry
from app.db import session
from app.tables import GpuSample, HostSample
from engine.hardware import GpuReading, nvml_status


def count(root, table, *where) -> int:
    with session(root) as s:
        return s.exec(select(func.count()).select_from(table).where(*where)).one()


def wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def fake_gpus():
    return [GpuReading(index=i, name=f"Fake GPU {i}", util_pct=50.0 + i, mem_used=1 << 30, mem_total=8 << 30,
                       temp_c=60.0, power_w=100.0, sm_clock_mhz=1500.0) for i in range(2)]


def host_row(t, cpu=10.0):
    return HostSample(t=t, cpu_pct=cpu, ram_used=1, ram_total=2, disk_used=3, disk_total=4)


def gpu_row(t, gpu, util=10.0):
    return GpuSample(t=t, gpu=gpu, util_pct=util, mem_used=1, mem_total=2, temp_c=50, power_w=70, sm_clock_mhz=1)


def test_sampler_writes_host_rows_and_stops_promptly(home):
    sampler = telemetry.TelemetrySampler(home, interval_s=0.1).start()
    try:
        assert wait_for(lambda: count(home, HostSample) >= 3)
    finally:
        sampler.stop()
    assert not sampler.is_alive()
    host, _ = telemetry.latest(home)
    assert 0 <= host.cpu_pct <= 100 and 0 < host.ram_used <= host.ram_total and 0 < host.disk_used <= host.disk_total
    assert sampler.thread_cpu_s > 0

    # A long interval: stop() must wake the waiting thread rather than sleep out the 60 s.
    slow = telemetry.TelemetrySampler(home, interval_s=60).start()
    slow.stop(timeout=10)
    assert not slow.is_alive()


@pytest.mark.skipif(nvml_status() == "ok", reason="this machine has an NVIDIA GPU")
def test_no_gpu_records_host_rows_only(home):
    telemetry.TelemetrySampler(home).sample_once()
    assert count(home, HostSample) == 1
    assert count(home, GpuSample) == 0
    assert telemetry.latest(home)[1] == []


def test_gpu_rows_share_the_tick_time(home, monkeypatch):
    monkeypatch.setattr(telemetry, "read_gpus", fake_gpus)
    sampler = telemetry.TelemetrySampler(home)
    sampler.sample_once()
    sampler.sample_once()
    host, gpus = telemetry.latest(home)
    assert [g.gpu for g in gpus] == [0, 1] and gpus[1].name == "Fake GPU 1"
    assert all(g.t == host.t for g in gpus)
    assert count(home, GpuSample) == 4


def test_a_failing_tick_does_not_end_the_thread(home, monkeypatch):
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("NVML went away")
        return []

    monkeypatch.setattr(telemetry, "read_gpus", flaky)
    sampler = telemetry.TelemetrySampler(home, interval_s=0.1).start()
    try:
        assert wait_for(lambda: count(home, HostSample) >= 2)
        assert sampler.is_alive()
    finally:
        sampler.stop()
    assert calls["n"] >= 3


def test_retention_thins_old_rows_and_drops_ancient_ones(home):
    now = 100 * 86400.0  # whole days: minute buckets start at multiples of 60
    day = 86400
    with session(home) as s:
        # 5 minutes at one row per 3 s, two days old (past a 24 h retention): thinned to one per minute.
        s.add_all(host_row(now - 2 * day + i * 3) for i in range(100))
        s.add_all(gpu_row(now - 2 * day + i * 3, gpu) for i in range(100) for gpu in (0, 1))
        # The last hour at full rate: kept.
        s.add_all(host_row(now - 3600 + i * 3) for i in range(100))
        # Older than 30 days: deleted.
        s.add_all(host_row(now - 31 * day + i) for i in range(10))
        s.add_all(gpu_row(now - 31 * day, 0) for _ in range(10))

    since = telemetry.apply_retention(home, retention_h=24, now=now)
    assert since == now - day
    old = HostSample.t < now - day
    assert count(home, HostSample, old) == 5  # 300 s of rows -> 5 minutes
    assert count(home, GpuSample, GpuSample.gpu == 0) == 5
    assert count(home, GpuSample, GpuSample.gpu == 1) == 5
    assert count(home, HostSample, HostSample.t >= now - 3600) == 100
    with session(home) as s:
        kept = s.exec(select(HostSample.t).where(old).order_by(HostSample.t)).all()
    assert kept == [now - 2 * day + m * 60 for m in range(5)]  # the first row of each minute

    # A later pass only walks rows past the watermark and leaves thinned minutes as they are.
    later = now + 3600
    assert telemetry.apply_retention(home, retention_h=24, now=later, since=since) == later - day
    assert count(home, HostSample) == 105


def test_series_bucket_by_average(home):
    with session(home) as s:
        # 0..59 s: cpu = t; GPU 1 only in the first half minute.
        s.add_all(host_row(1000.0 * 60 + i, cpu=float(i)) for i in range(60))
        s.add_all(gpu_row(1000.0 * 60 + i, gpu, util=float(i)) for i in range(60) for gpu in (0, 1)
                  if gpu == 0 or i < 30)
    start, end = 60000.0, 60060.0
    points = telemetry.host_series(home, start, end, max_points=6)  # 10 s buckets
    assert [p.cpu_pct for p in points] == [4.5, 14.5, 24.5, 34.5, 44.5, 54.5]
    assert [p.t for p in points] == [start + 4.5 + 10 * k for k in range(6)]
    assert points[0].ram_total == 2

    gpus = telemetry.gpu_series(home, start, end, max_points=6)
    assert sorted(gpus) == [0, 1]
    assert [p.util_pct for p in gpus[0]] == [4.5, 14.5, 24.5, 34.5, 44.5, 54.5]
    assert [p.util_pct for p in gpus[1]] == [4.5, 14.5, 24.5]

    # A fixed bucket width, and a span smaller than max_points seconds: one point per row.
    assert len(telemetry.host_series(home, start, end, bucket_s=30)) == 2
    assert len(telemetry.host_series(home, start, start + 20)) == 20
    assert telemetry.host_series(home, end, end + 60) == []


async def test_stopping_the_web_app_joins_the_sampler(home):
    """The web app's shutdown handler really stops the sampler: NiceGUI hands a one-argument handler its App,
    which a bound `sampler.stop` took as its timeout, so the thread was never joined (and every stop logged
    "Application shutdown failed")."""
    from nicegui.testing.user_simulation import user_simulation

    from app.registry import BUNDLED_MARKER
    from ui import main as web

    (home / BUNDLED_MARKER).write_text("1")  # no first-start job: this test is about the sampler
    main_file = Path(__file__).resolve().parents[1] / "ui" / "main.py"
    async with user_simulation(main_file=main_file):  # the real app lifecycle: startup, then shutdown on exit
        sampler = web.start_background_work()
        assert sampler.is_alive()
    assert not sampler.is_alive()
