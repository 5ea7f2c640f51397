"""Charts of host and GPU telemetry over a time span: the Telemetry page follows the present, the Jobs page shows
a job's span.

Data is read off the event loop (offload.io_bound) as bucketed averages, at most ~600 points a series. A live chart
keeps one bucket width for its whole life and appends only buckets that are complete, so a point never changes
once drawn and each tick sends a handful of new points' worth of work to the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from nicegui import ui

from app import telemetry
from app.telemetry import GpuPoint, HostPoint
from ui import state
from ui.components.offload import io_bound
from ui.i18n import t

MAX_POINTS = 600
LAG_S = 5.0  # a tick's rows commit a moment after their `t`: buckets younger than this may still be filling
GIB = 1024**3

# (title, unit, value of a point, y-axis maximum from the latest point or None to fit the data)
Chart = tuple[str, str, Callable, Callable | None]
HOST_CHARTS: list[Chart] = [
    ("CPU", "%", lambda p: p.cpu_pct, lambda p: 100),
    ("RAM used", "GiB", lambda p: p.ram_used / GIB, lambda p: p.ram_total / GIB),
]
GPU_CHARTS: list[Chart] = [
    ("GPU utilization", "%", lambda p: p.util_pct, lambda p: 100),
    ("GPU memory used", "GiB", lambda p: p.mem_used / GIB, lambda p: p.mem_total / GIB),
    ("GPU temperature", "°C", lambda p: p.temp_c, None),
    ("GPU power", "W", lambda p: p.power_w, None),
]


def telemetry_chart(root: Path, start_t: float, end_t: float | None = None, *, window_s: float | None = None):
    """Charts of CPU, RAM and each GPU over [start_t, end_t]; end_t=None follows the present, appending points.

    window_s (live only) keeps the last window_s seconds in view instead of growing from start_t.
    """
    return _Charts(Path(root), start_t, end_t, window_s)


def _options(title: str, unit: str, names: list[str], y_max: float | None) -> dict:
    return {
        "title": {"text": f"{title} ({unit})", "textStyle": {"fontSize": 13}},
        "tooltip": {"trigger": "axis"},
        "legend": {"show": len(names) > 1, "right": 0},
        "grid": {"left": 48, "right": 16, "top": 36, "bottom": 28},
        "xAxis": {"type": "time"},
        "yAxis": {"type": "value", "min": 0, "max": round(y_max, 1) if y_max else None},
        "animation": False,
        "series": [{"type": "line", "name": n, "showSymbol": False, "data": []} for n in names],
    }


class _Charts:
    def __init__(self, root: Path, start_t: float, end_t: float | None, window_s: float | None):
        self.root, self.start_t, self.end_t, self.window_s = root, start_t, end_t, window_s
        interval = state.settings().telemetry_interval_s
        span = window_s or (end_t or time.time()) - start_t
        # Never finer than the sampling interval: narrower buckets would only add empty ones.
        self.width = max(span / MAX_POINTS, interval)
        self.edge = start_t  # rows before this are drawn
        self.charts: list[tuple[ui.echart, Callable, list[int | None]]] = []  # element, value, source per series
        self.box = ui.column().classes("w-full gap-2")
        with self.box:
            if end_t is None:
                ui.timer(max(interval, 2.0), self._tick)
            else:
                ui.timer(0, self._tick, once=True)

    def _until(self) -> float:
        if self.end_t is not None:
            return self.end_t
        return (time.time() - LAG_S) // self.width * self.width

    async def _tick(self) -> None:
        until = self._until()
        if until <= self.edge and self.charts:
            return
        host, gpus, inventory = await io_bound(self._fetch, self.edge, until, not self.charts)
        self.edge = max(until, self.edge)
        if self.box.is_deleted:
            return
        if not self.charts:
            self._build(host, gpus, inventory)
        self._append(host, gpus)

    def _fetch(self, start: float, end: float, first: bool):
        host = telemetry.host_series(self.root, start, end, bucket_s=self.width)
        gpus = telemetry.gpu_series(self.root, start, end, bucket_s=self.width)
        # A live chart draws every GPU of this machine, even before its first row.
        inventory = len(telemetry.gpu_inventory()[1]) if first and self.end_t is None else 0
        return host, gpus, inventory

    def _build(self, host: list[HostPoint], gpus: dict[int, list[GpuPoint]], inventory: int) -> None:
        indices = sorted(set(gpus) | set(range(inventory)))
        with self.box:
            if not host and not indices and self.end_t is not None:
                ui.label(t("No telemetry was recorded in this span.")).classes("opacity-70")
                return
            with ui.element("div").classes("grid grid-cols-1 lg:grid-cols-2 gap-2 w-full"):
                for spec in HOST_CHARTS:
                    self._chart(spec, [t(spec[0])], host[-1:], [None])
                if indices:
                    last = [gpus[i][-1] for i in indices if gpus.get(i)]
                    for spec in GPU_CHARTS:
                        self._chart(spec, [t("GPU {i}", i=i) for i in indices], last, indices)

    def _chart(self, spec: Chart, names: list[str], last: list, sources: list[int | None]) -> None:
        """One chart with a series per source (None: the host, else a GPU index)."""
        title, unit, value, y_max = spec
        top = max((y_max(p) for p in last), default=None) if y_max else None
        chart = ui.echart(_options(t(title), unit, names, top)).classes("w-full h-64")
        self.charts.append((chart, value, sources))

    def _append(self, host: list[HostPoint], gpus: dict[int, list[GpuPoint]]) -> None:
        # The x axis spans the whole requested time, not just the rows found, so gaps and idle time show.
        now = time.time()
        live_window = self.window_s is not None and self.end_t is None
        x_min = (now - self.window_s if live_window else self.start_t) * 1000
        x_max = (self.end_t or now) * 1000
        for chart, value, sources in self.charts:
            for series, source in zip(chart.options["series"], sources, strict=True):
                points = host if source is None else gpus.get(source, [])
                data = series["data"]
                data.extend([round(p.t * 1000), round(value(p), 2)] for p in points)
                if live_window and data and data[0][0] < x_min:
                    data[:] = [d for d in data if d[0] >= x_min]
            chart.options["xAxis"].update(min=round(x_min), max=round(x_max))
            chart.update()
