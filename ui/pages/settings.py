"""The Settings page: edit the one Settings object, with each mistake shown at its field before anything is saved.

Labels and limits come from the Settings model itself (field descriptions, ge/le bounds), so the page cannot
drift from what load_settings accepts. The file is written atomically through state.update_settings.
"""

from __future__ import annotations

from annotated_types import Ge, Le
from nicegui import run, ui
from nicegui.elements.mixins.validation_element import ValidationElement
from pydantic import ValidationError

from app.settings import Settings
from ui import state
from ui.components.agent_tools import hosts_problem, split_hosts
from ui.components.mcp_servers import MCPServersSection
from ui.frame import frame
from ui.i18n import LANGUAGES, t

NEXT_LAUNCH = ("host", "port", "access_token", "telemetry_interval_s")  # read once when the app starts
ON_RELOAD = ("language", "dark_mode")  # read when a page is built


def _label(name: str) -> str:
    return t(Settings.model_fields[name].description)


def _number_check(name: str):
    """Validation for a numeric field: its bounds and, for an int field, a whole number."""
    field = Settings.model_fields[name]
    lo = next(m.ge for m in field.metadata if isinstance(m, Ge))
    hi = next(m.le for m in field.metadata if isinstance(m, Le))

    def check(value) -> str | None:
        if value is None:
            return t("Enter a number")
        if field.annotation is int and not float(value).is_integer():
            return t("Enter a whole number")
        if not lo <= value <= hi:
            return t("Must be between {lo} and {hi}", lo=f"{lo:g}", hi=f"{hi:g}")
        return None

    return check


def _number(name: str, value: float) -> ui.number:
    return ui.number(_label(name), value=value, validation=_number_check(name)).classes("w-96").mark(name)


@ui.page("/settings")
def settings_page() -> None:
    current = state.settings()
    fields: dict[str, ui.element] = {}

    def check_host(value: str | None) -> str | None:
        from engine.netaddr import is_loopback

        host = (value or "").strip()
        if not host:
            return t("Enter an address, e.g. 127.0.0.1")
        if not is_loopback(host) and not fields["access_token"].value:
            return t("Set an access token first: on {host} anyone on the network could use Inkstone.", host=host)
        return None

    def check_token(value: str | None) -> str | None:
        return t("At least 8 characters") if value and len(value) < 8 else None

    async def save() -> None:
        # Validate every field (not all() over a generator) so each mistake is marked at once.
        results = [f.validate() for f in fields.values() if isinstance(f, ValidationElement)]
        if not all(results):
            ui.notify(t("Fix the marked fields first."), type="negative")
            return
        old = state.settings()
        # Fields this form does not show (the MCP servers, saved by their own section) keep their saved values.
        values = old.model_dump() | {name: f.value for name, f in fields.items()}
        values["host"] = values["host"].strip()
        values["agent_allowed_hosts"] = split_hosts(values["agent_allowed_hosts"])
        for name in fields:
            if Settings.model_fields[name].annotation is int:
                values[name] = int(values[name])
        try:
            new = Settings.model_validate(values)
        except ValidationError as e:  # a rule the field checks do not know about: show it at its field
            for err in e.errors():
                name = str(err["loc"][0])
                if name in fields:
                    fields[name].error = err["msg"]
                else:
                    ui.notify(f"{name}: {err['msg']}", type="negative")
            ui.notify(t("Fix the marked fields first."), type="negative")
            return
        await run.io_bound(state.update_settings, new)
        changed = {name for name in Settings.model_fields if getattr(new, name) != getattr(old, name)}
        status.clear()
        with status:
            ui.label(t("Settings saved."))
            if changed & set(NEXT_LAUNCH):
                ui.label(t("Host, port, access token and telemetry interval apply at the next launch."))
            if changed & set(ON_RELOAD):
                ui.button(t("Reload the page to see the new language and theme"), on_click=ui.navigate.reload,
                          icon="refresh").props("flat")
        ui.notify(t("Settings saved."), type="positive")

    with frame(t("Settings")):
        ui.label(t("Data dir: {path}", path=state.root())).classes("font-mono text-sm").mark("data-dir")
        with ui.card().classes("w-full max-w-2xl"):
            ui.label(t("Appearance")).classes("text-lg font-medium")
            fields["language"] = ui.select(LANGUAGES, value=current.language, label=_label("language")).classes(
                "w-96").mark("language")
            fields["dark_mode"] = ui.switch(_label("dark_mode"), value=current.dark_mode).mark("dark_mode")
            ui.label(t("Language and theme change when the page reloads.")).classes("text-sm opacity-70")
        with ui.card().classes("w-full max-w-2xl"):
            ui.label(t("Web server")).classes("text-lg font-medium")
            fields["host"] = ui.input(_label("host"), value=current.host, validation=check_host).classes(
                "w-96").mark("host")
            fields["port"] = _number("port", current.port)
            fields["access_token"] = ui.input(_label("access_token"), value=current.access_token, password=True,
                                              password_toggle_button=True, validation=check_token).classes(
                "w-96").mark("access_token")
            # The host check depends on the token: re-check it when the token changes.
            fields["access_token"].on_value_change(lambda: fields["host"].validate())
            ui.label(t("Host, port and access token apply at the next launch.")).classes("text-sm opacity-70")
        with ui.card().classes("w-full max-w-2xl"):
            ui.label(t("Telemetry")).classes("text-lg font-medium")
            fields["telemetry_interval_s"] = _number("telemetry_interval_s", current.telemetry_interval_s)
            fields["telemetry_retention_h"] = _number("telemetry_retention_h", current.telemetry_retention_h)
            ui.label(t("The interval applies at the next launch. Past the full-rate hours, samples are thinned "
                       "to one per minute and deleted after 30 days.")).classes("text-sm opacity-70")
        with ui.card().classes("w-full max-w-2xl"):
            ui.label(t("Jobs")).classes("text-lg font-medium")
            fields["gpu_jobs_per_gpu"] = _number("gpu_jobs_per_gpu", current.gpu_jobs_per_gpu)
            fields["job_stop_grace_s"] = _number("job_stop_grace_s", current.job_stop_grace_s)
            ui.label(t("These apply to the next job that starts.")).classes("text-sm opacity-70")
        with ui.card().classes("w-full max-w-2xl"):
            ui.label(t("Agents")).classes("text-lg font-medium")
            fields["agent_allowed_hosts"] = ui.input(
                _label("agent_allowed_hosts"), value=", ".join(current.agent_allowed_hosts), validation=hosts_problem,
                placeholder="docs.local, *.example.com, 127.0.0.1:8080").classes("w-96").mark("agent_allowed_hosts")
            ui.label(t("The Agent playground offers the http tool when hosts are given.")).classes(
                "text-sm opacity-70")
        ui.button(t("Save"), icon="save", on_click=save).mark("save")
        status = ui.column().classes("gap-1")
        MCPServersSection()
