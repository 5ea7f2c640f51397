"""The Telemetry page and the telemetry chart, rendered through NiceGUI's simulated user on a fresh data dir."""

from __future__ import annotations

import asyncio
import inspect
import time

from nicegui import ElementFilter, ui
from nicegui.testing import User

from app.db import session
from app.settings import Settings
from app.tables import HostSample
from engine.hardware import nvml_status
from ui import state


def add_host_rows(root, start: float, n: int, step: float = 3.0) -> None:
    with session(root) as s:
        s.add_all(HostSample(t=start + i * step, cpu_pct=float(i), ram_used=2 << 30, ram_total=8 << 30,
                             disk_used=10 << 30, disk_total=100 << 30) for i in range(n))


async def chart_points(user: User, want: list[int], timeout: float = 5.0) -> list[int]:
    """Points per series of every chart, polled until they are `want` (charts load and append off the loop)."""
    deadline = time.monotonic() + timeout
    while True:
        with user.client:
            counts = [len(s["data"]) for c in ElementFilter(kind=ui.echart) for s in c.options["series"]]
        if counts == want or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)


async def test_telemetry_page_without_gpu(home, user: User):
    now = time.time()
    add_host_rows(home, now - 120, 20)  # the last two minutes, already old enough to be drawn
    await user.open("/telemetry")
    await user.should_see("Telemetry")
    if nvml_status() != "ok":
        await user.should_see("No NVIDIA GPU found")
        await user.should_see(nvml_status())
    await user.should_see("RAM used")
    await user.should_see("of 8.0 GiB")  # the newest row on a card
    # CPU and RAM charts with every row (3 s rows, 3 s buckets); no GPU charts on this machine.
    assert await chart_points(user, [20, 20]) == [20, 20]
    user.find("1 h").click()
    assert await chart_points(user, [20, 20]) == [20, 20]


async def test_live_chart_appends_new_rows(home, user: User):
    state.update_settings(Settings(telemetry_interval_s=0.5))  # 1 s buckets, a tick every 2 s
    add_host_rows(home, time.time() - 120, 20)
    await user.open("/telemetry")
    assert await chart_points(user, [20, 20]) == [20, 20]
    # A row the sampler committed just now, a few seconds behind: drawn by the next tick.
    add_host_rows(home, time.time() - 4, 1)
    assert await chart_points(user, [21, 21], timeout=10) == [21, 21]


async def test_chart_of_a_finished_span(home, user: User):
    add_host_rows(home, 999_999.0, 600, step=1.0)  # ten minutes at 1 s, starting on a 3 s boundary

    @ui.page("/chart-test")
    def chart_test():
        from ui.components.telemetry_chart import telemetry_chart

        telemetry_chart(home, 999_999.0, 1_000_599.0)
        telemetry_chart(home, 2_000_000.0, 2_000_600.0)

    await user.open("/chart-test")
    # Default interval 3 s: ten minutes of 1 s rows fold into 200 buckets; the empty span says so.
    assert await chart_points(user, [200, 200]) == [200, 200]
    await user.should_see("No telemetry was recorded in this span.")


async def test_timers_caught_by_a_stopping_app_end_quietly(home, user: User, monkeypatch):
    """While the app stops, NiceGUI's run.io_bound answers None instead of running the call; a tick caught
    then must end (CancelledError, which a timer takes as its end) rather than unpack None (TypeError)."""
    from nicegui import core
    from nicegui.app.app import State

    add_host_rows(home, time.time() - 120, 20)
    await user.open("/telemetry")  # taken before the live chart's first tick (3 s): that tick reads rows
    with user.client:
        callbacks = [timer.callback for timer in ElementFilter(kind=ui.timer)]
    monkeypatch.setattr(core.app, "_state", State.STOPPING)
    ended = 0
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            ended += 1
    # The current-values cards and the live chart each read through io_bound (so does the GPU inventory, a
    # one-shot timer that may have run already).
    assert ended >= 2
