"""The Telemetry page: is the machine busy, hot or out of memory right now, and how was it over the last hours?

Current values come from the newest rows the sampler wrote (not a fresh read), so the page costs the machine
nothing beyond a few indexed queries, and what the cards say matches the charts.
"""

from __future__ import annotations

import time

from nicegui import ui

from app import telemetry
from ui import state
from ui.components.formatting import human_bytes, human_time
from ui.components.offload import io_bound
from ui.components.telemetry_chart import telemetry_chart
from ui.frame import frame
from ui.i18n import t

RANGES = {600: "10 min", 3600: "1 h", 86400: "24 h"}  # seconds of history shown: label


def _card(title: str, value: str, detail: str = "") -> None:
    with ui.card().classes("min-w-44 gap-0"):
        ui.label(title).classes("text-sm opacity-70")
        ui.label(value).classes("text-xl font-medium")
        if detail:
            ui.label(detail).classes("text-xs opacity-70")


def _current(host, gpus) -> None:
    if host is None:
        ui.label(t("Waiting for the first sample…")).classes("opacity-70")
        return
    with ui.row().classes("gap-2 flex-wrap"):
        _card(t("CPU"), f"{host.cpu_pct:.0f} %")
        _card(t("RAM used"), human_bytes(host.ram_used), t("of {total}", total=human_bytes(host.ram_total)))
        _card(t("Disk used (data dir)"), human_bytes(host.disk_used),
              t("of {total}", total=human_bytes(host.disk_total)))
        for g in gpus:
            with ui.card().classes("min-w-56 gap-0"):
                ui.label(t("GPU {i}", i=g.gpu) + f" · {g.name}").classes("text-sm opacity-70")
                ui.label(f"{g.util_pct:.0f} %").classes("text-xl font-medium")
                ui.label(f"{human_bytes(g.mem_used)} / {human_bytes(g.mem_total)} · {g.temp_c:.0f} °C · "
                         f"{g.power_w:.0f} W · {g.sm_clock_mhz:.0f} MHz").classes("text-xs opacity-70")
    ui.label(t("As of {time}", time=human_time(host.t))).classes("text-xs opacity-60")


@ui.page("/telemetry")
def telemetry_page() -> None:
    root = state.root()
    with frame(t("Telemetry")):
        inventory = ui.column().classes("gap-0")

        async def show_inventory() -> None:
            status, names = await io_bound(telemetry.gpu_inventory)
            with inventory:
                if status != "ok":
                    ui.label(t("No NVIDIA GPU found: showing CPU, RAM and disk only.")).classes("font-medium")
                    ui.label(status).classes("text-sm opacity-70")
                else:
                    for i, name in enumerate(names):
                        ui.label(t("GPU {i}", i=i) + f": {name}")

        # Refreshables made per page visit: one visitor's range choice must not redraw another's charts.
        current = ui.refreshable(_current)

        @ui.refreshable
        def charts(window_s: int) -> None:
            telemetry_chart(root, time.time() - window_s, None, window_s=window_s)

        async def refresh_current() -> None:
            current.refresh(*await io_bound(telemetry.latest, root))

        ui.timer(0, show_inventory, once=True)
        current(None, [])
        ui.timer(state.settings().telemetry_interval_s, refresh_current)
        ui.toggle({s: t(label) for s, label in RANGES.items()}, value=600,
                  on_change=lambda e: charts.refresh(e.value))
        charts(600)
