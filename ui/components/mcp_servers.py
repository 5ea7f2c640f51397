"""MCP servers in Settings: list, add, edit and remove them, and check each one (connect, list tools) on demand.

A server is saved as soon as its dialog is confirmed (or it is removed), through the same validated Settings
object as the rest of the page, so a mistake is shown at its field and never reaches settings.json. A check
starts the server (or reaches its URL), lists its tools and disconnects; its result and time are kept for the
life of the web process, so the page shows the last one after a reload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nicegui import ui
from pydantic import ValidationError

from app.settings import MCPServerSetting, Settings
from ui import state
from ui.components.offload import io_bound
from ui.i18n import t

CHECK_TIMEOUT_S = 20.0


@dataclass
class Checked:
    at: float
    ok: bool
    tools: list[str]
    error: str


CHECKS: dict[str, Checked] = {}
"""The last check of each server, by name."""
CHECKING: set[str] = set()
"""Servers being checked now."""


def parse_pairs(text: str, separator: str) -> dict[str, str]:
    """Lines of KEY=VALUE (env) or Name: value (headers); ValueError names the line that is not one."""
    pairs = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(separator)
        if not sep or not key.strip():
            raise ValueError(t("line {n}: write it as NAME{sep}value", n=number, sep=separator))
        pairs[key.strip()] = value.strip()
    return pairs


def format_pairs(pairs: dict[str, str], separator: str) -> str:
    return "\n".join(f"{k}{separator}{v}" for k, v in pairs.items())


def status_text(name: str) -> str:
    if name in CHECKING:
        return t("checking…")
    check = CHECKS.get(name)
    if check is None:
        return t("not checked yet")
    when = time.strftime("%H:%M:%S", time.localtime(check.at))
    if check.ok:
        return t("ok, {n} tools (checked {time})", n=len(check.tools), time=when)
    return t("{error} (checked {time})", error=check.error, time=when)


async def check(server: MCPServerSetting) -> Checked:
    """Check one server in a worker thread and remember the result."""
    from engine.agents.mcp_client import check_server

    spec = server.to_spec()
    spec.timeout_s = CHECK_TIMEOUT_S
    found = await io_bound(check_server, spec)
    CHECKS[server.name] = Checked(at=time.time(), ok=found.ok, tools=found.tools, error=found.error)
    return CHECKS[server.name]


def record_stopped(name: str, error: str) -> None:
    """A server that stopped during an agent run: Settings shows it until the next check."""
    CHECKS[name] = Checked(at=time.time(), ok=False, tools=[], error=t("stopped during an agent run: {error}",
                                                                     error=error))


def save_servers(servers: list[MCPServerSetting]) -> Settings:
    """Validate the whole settings object with the new list, then write it; ValidationError when it is refused."""
    current = state.settings()
    new = Settings.model_validate({**current.model_dump(), "mcp_servers": [s.model_dump() for s in servers]})
    state.update_settings(new)
    return new


class MCPServersSection:
    """The card on the Settings page."""

    def __init__(self) -> None:
        with ui.card().classes("w-full max-w-2xl"):
            ui.label(t("MCP servers")).classes("text-lg font-medium")
            ui.label(t("Tools of the enabled servers are offered in the Agent playground.")).classes(
                "text-sm opacity-70")
            self.rows = ui.column().classes("w-full gap-1")
            with ui.row():
                ui.button(t("Add a server"), icon="add", on_click=lambda: self.edit(None)).props("flat").mark(
                    "mcp-add")
                ui.button(t("Check all"), icon="sync", on_click=self.check_all).props("flat").mark("mcp-check-all")
        self.dialog = ui.dialog()
        self.show()

    def show(self) -> None:
        self.rows.clear()
        servers = state.settings().mcp_servers
        with self.rows:
            if not servers:
                ui.label(t("No MCP servers yet.")).classes("opacity-60").mark("mcp-none")
            for server in servers:
                with ui.row().classes("w-full items-center gap-2 no-wrap").mark(f"mcp-server-{server.name}"):
                    ui.label(server.name).classes("font-medium")
                    ui.label(server.command or server.url).classes("font-mono text-xs truncate flex-1")
                    if not server.enabled:
                        ui.label(t("disabled")).classes("text-xs opacity-60")
                    ui.label(status_text(server.name)).classes("text-sm").mark(f"mcp-status-{server.name}")
                    ui.button(icon="sync", on_click=lambda s=server: self.check_one(s)).props("flat dense").mark(
                        f"mcp-check-{server.name}").tooltip(t("Check"))
                    ui.button(icon="edit", on_click=lambda s=server: self.edit(s)).props("flat dense").mark(
                        f"mcp-edit-{server.name}").tooltip(t("Edit"))
                    ui.button(icon="delete", on_click=lambda s=server: self.remove(s)).props("flat dense").mark(
                        f"mcp-remove-{server.name}").tooltip(t("Remove"))

    async def check_one(self, server: MCPServerSetting) -> None:
        CHECKING.add(server.name)
        self.show()
        try:
            await check(server)
        finally:
            CHECKING.discard(server.name)
            self.show()

    async def check_all(self) -> None:
        for server in state.settings().mcp_servers:
            await self.check_one(server)

    async def remove(self, server: MCPServerSetting) -> None:
        servers = [s for s in state.settings().mcp_servers if s.name != server.name]
        await io_bound(save_servers, servers)
        CHECKS.pop(server.name, None)
        ui.notify(t("MCP server {name} removed.", name=server.name))
        self.show()

    def edit(self, server: MCPServerSetting | None) -> None:
        """The add/edit dialog; Save validates every field and shows each mistake at its field."""
        self.dialog.clear()
        with self.dialog, ui.card().classes("w-[36rem]").mark("mcp-dialog"):
            ui.label(t("Edit MCP server") if server else t("Add an MCP server")).classes("text-lg")
            name = ui.input(t("Name"), value=server.name if server else "").classes("w-full").mark("mcp-name")
            transport = ui.radio({"stdio": t("Command (stdio)"), "http": t("URL (Streamable HTTP)")},
                                 value="http" if server and server.url else "stdio").props("inline").mark(
                "mcp-transport")
            command = ui.input(t("Command"), value=server.command if server else "").classes("w-full").mark(
                "mcp-command")
            url = ui.input(t("URL"), value=server.url if server else "").classes("w-full").mark("mcp-url")
            env = ui.textarea(t("Environment (NAME=value, one a line)"),
                              value=format_pairs(server.env, "=") if server else "").classes("w-full").props(
                "rows=2").mark("mcp-env")
            headers = ui.textarea(t("Headers (Name: value, one a line)"),
                                  value=format_pairs(server.headers, ": ") if server else "").classes(
                "w-full").props("rows=2").mark("mcp-headers")
            enabled = ui.switch(t("Enabled"), value=server.enabled if server else True).mark("mcp-enabled")
            command.bind_visibility_from(transport, "value", value="stdio")
            env.bind_visibility_from(transport, "value", value="stdio")
            url.bind_visibility_from(transport, "value", value="http")
            headers.bind_visibility_from(transport, "value", value="http")
            fields = {"name": name, "command": command, "url": url, "env": env, "headers": headers}

            async def confirm() -> None:
                for field in fields.values():
                    field.error = None
                stdio = transport.value == "stdio"
                values = {"name": name.value or "", "enabled": enabled.value,
                          "command": (command.value or "") if stdio else "", "url": "" if stdio else url.value or ""}
                for key, box, sep in (("env", env, "="), ("headers", headers, ":")):
                    try:
                        values[key] = parse_pairs(box.value, sep) if (key == "env") == stdio else {}
                    except ValueError as e:
                        box.error = str(e)
                        return
                try:
                    entry = MCPServerSetting.model_validate(values)
                except ValidationError as e:
                    for err in e.errors():
                        loc = str(err["loc"][0]) if err["loc"] else ("command" if stdio else "url")
                        fields.get(loc, command if stdio else url).error = err["msg"].removeprefix("Value error, ")
                    return
                others = [s for s in state.settings().mcp_servers if s.name != (server.name if server else None)]
                if any(s.name == entry.name for s in others):
                    name.error = t("A server called {name} exists already.", name=entry.name)
                    return
                position = [s.name for s in state.settings().mcp_servers].index(server.name) if server else None
                servers = list(others)
                servers.insert(len(servers) if position is None else position, entry)
                try:
                    await io_bound(save_servers, servers)
                except ValidationError as e:
                    name.error = e.errors()[0]["msg"]
                    return
                for checked in {entry.name, server.name if server else entry.name}:
                    CHECKS.pop(checked, None)  # a check (or a run) saw another configuration, not this one
                self.dialog.close()
                ui.notify(t("MCP server {name} saved.", name=entry.name), type="positive")
                self.show()

            with ui.row():
                ui.button(t("Save server"), on_click=confirm).mark("mcp-save")
                ui.button(t("Cancel"), on_click=self.dialog.close).props("flat").mark("mcp-cancel")
        self.dialog.open()
