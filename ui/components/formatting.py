"""Human-readable numbers, sizes, times and durations, shared by every page so they all read the same way."""

from __future__ import annotations

import time


def human_count(n: int | float) -> str:
    """Parameter counts as people say them: 135M, 7.2B, 1.1T (one decimal below 10, none above)."""
    n = float(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def human_bytes(n: int | float) -> str:
    """Binary units, labelled as such, so a 4 GiB GPU does not read as 4.3 GB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    n, i = float(n), 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} {units[i]}" if i == 0 or n >= 100 else f"{n:.1f} {units[i]}"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def human_time(epoch: float | None) -> str:
    """Local wall-clock time; the date is left out for today, where it is noise."""
    if epoch is None:
        return "—"
    fmt = "%H:%M:%S" if time.localtime(epoch)[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(epoch))
