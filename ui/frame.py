"""The shared frame every page sits in: header, left navigation, dark mode.

Later stages add their page by adding a line to NAV; there are no placeholder pages.
"""

from __future__ import annotations

from contextlib import contextmanager

from nicegui import ui

from ui import state
from ui.i18n import t

# (path, English label, Material icon), in the order of the chain: data → training → serving → export
NAV = [
    ("/", "Home", "home"),
    ("/models", "Models", "smart_toy"),
    ("/datasets", "Datasets", "dataset"),
    ("/finetune", "Finetune", "model_training"),
    ("/chat", "Chat", "chat"),
    ("/agents", "Agents", "psychology"),
    ("/export", "Export", "output"),
    ("/evaluate", "Evaluate", "fact_check"),
    ("/jobs", "Jobs", "work_history"),
    ("/telemetry", "Telemetry", "insights"),
    ("/settings", "Settings", "settings"),
]


@contextmanager
def frame(title: str):
    """Wrap a page's content: `with frame(t('Models')): ...`."""
    ui.page_title(f"{title} · Inkstone")
    dark = ui.dark_mode(state.settings().dark_mode)
    with ui.header(elevated=True).classes("items-center gap-4 px-4 py-2"):
        ui.button(icon="menu", on_click=lambda: drawer.toggle()).props("flat round color=white")
        ui.label(t("Inkstone")).classes("text-lg font-bold")
        ui.label(title).classes("text-lg opacity-80").props("data-testid=page-title")
        ui.space()
        ui.switch(t("Dark mode"), value=dark.value, on_change=lambda e: dark.set_value(e.value)).props(
            "color=white dark")
    with ui.left_drawer(value=True, bordered=True).classes("p-0") as drawer, ui.list().classes("w-full"):
        for path, label, icon in NAV:
            with ui.item(on_click=lambda p=path: ui.navigate.to(p)).props("clickable"):
                with ui.item_section().props("avatar"):
                    ui.icon(icon)
                ui.item_section(t(label))
    with ui.column().classes("w-full p-4 gap-4"):
        yield
