"""A one-line badge saying how generated code is isolated on this machine (namespaces, seccomp or none).

Evaluation runs model-written programs and the agents' Python tool runs model-written cells; a user deciding
whether to trust that should see which walls are actually up, not just read that there is a sandbox. The
probe starts one real sandboxed process, so it runs off the event loop and the badge fills in when it is done.
"""

from __future__ import annotations

from nicegui import ui

from ui.components.offload import io_bound
from ui.i18n import t

MODES = {
    "namespaces": "Code sandbox: own network, file and process namespaces",
    "seccomp": "Code sandbox: seccomp network filter and a Python audit hook (weaker: the kernel refuses namespaces)",
    "none": "Code sandbox: a Python audit hook only (weak: the kernel refuses namespaces and seccomp)",
}


def _probe():
    from engine.sandbox import isolation  # no torch; kept out of the page's import time

    return isolation()


def sandbox_badge() -> None:
    """Show the badge where this is called; it says 'checking…' until the probe answers (the page does not wait)."""
    with ui.row().classes("items-center gap-1 text-sm text-grey-8").mark("sandbox-status"):
        icon = ui.icon("shield").classes("text-grey-6")
        label = ui.label(t("Code sandbox: checking…"))

    async def fill() -> None:
        found = await io_bound(_probe)
        label.text = t(MODES.get(found.mode, MODES["none"]))
        icon.classes(replace="text-positive" if found.mode == "namespaces" else "text-warning")
        with label:
            ui.tooltip(str(found) + (f" ({found.reason})" if found.reason else ""))

    ui.timer(0, fill, once=True)
