"""Run blocking work (SQLite, files, NVML) off the event loop, for pages and their timers.

NiceGUI 3's run.io_bound hands back None when the app is stopping or its thread pool is gone (an interim
shape; 4.0 will raise CancelledError). A timer tick caught in shutdown would then crash on None, and None is
also a real answer of some functions, so here a stopping app cancels the caller instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from nicegui import core, run

R = TypeVar("R")


async def io_bound(func: Callable[..., R], *args, **kwargs) -> R:
    result = await run.io_bound(func, *args, **kwargs)
    if result is None and not core.app.is_started:
        raise asyncio.CancelledError
    return result
