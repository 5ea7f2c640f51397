"""The tool picker of the Agent playground: built-in tools, the tools of the MCP servers set in Settings, an
approval policy for each, the hosts the http tool may reach, and which tool the first turn must call.

The MCP servers come from Settings (added, edited and checked there); the picker lists each enabled server's
tools by name when the page opens — that check is the one Settings shows, so both pages agree on a server's
status. The allowed hosts are a setting too: what is typed here is validated and saved when a run starts, so
the next visit, and the Settings page, show the same list.
"""

from __future__ import annotations

from nicegui import ui
from pydantic import ValidationError

from app.settings import MCPServerSetting, Settings, check_allowed_host
from ui import state
from ui.components.mcp_servers import check
from ui.i18n import t

POLICIES = ("always", "ask", "never")
CODE_TOOLS = ("python",)
"""Tools that run code: they ask before each call unless the user says otherwise (as MCP tools do)."""


def split_hosts(value: str | list | None) -> list[str]:
    """Hosts typed as one line, separated by commas, spaces or new lines (a list is already split)."""
    if isinstance(value, list):
        return value
    return [h for h in (value or "").replace(",", " ").split() if h]


def hosts_problem(value: str | None) -> str | None:
    """Field validation of allowed hosts (Settings page and playground): the first entry that is not a host."""
    for host in split_hosts(value):
        try:
            check_allowed_host(host)
        except ValueError:
            return t("{host} is not a host: write host, host:port or *.domain", host=host)
    return None


class ToolPicker:
    def __init__(self) -> None:
        from engine.agents.catalog import BUILTIN

        settings = state.settings()
        self.servers = [s for s in settings.mcp_servers if s.enabled]
        self.tools: dict[str, ui.checkbox] = {}
        self.policies: dict[str, ui.select] = {}
        self.mcp_tools: dict[tuple[str, str], tuple[ui.checkbox, ui.select]] = {}
        with ui.row().classes("items-center gap-4"):
            for name in BUILTIN:
                with ui.row().classes("items-center gap-1"):
                    self.tools[name] = ui.checkbox(name, value=name == "calculator").mark(f"tool-{name}")
                    self.policies[name] = self._policy(name in CODE_TOOLS or name == "http", f"policy-{name}")
        with ui.row().classes("items-end gap-2 w-full no-wrap"):
            self.hosts = (
                ui.input(t("Hosts the http tool may reach"), value=", ".join(settings.agent_allowed_hosts),
                         placeholder="docs.local, *.example.com, 127.0.0.1:8080", validation=hosts_problem)
                .classes("flex-1")
                .mark("agent-hosts")
            )
            self.code_limit = (
                ui.number(t("Longest Python code per call (characters, 0: no limit)"), value=0, min=0, max=100_000,
                          precision=0)
                .classes("w-64")
                .tooltip(t("A limit lets the model server close the code string: small models otherwise run on."))
                .mark("agent-code-limit")
            )
            self.tool_choice = (
                ui.select(self._choices(), value="auto", label=t("First turn (function calling)"))
                .classes("w-56")
                .mark("agent-tool-choice")
            )
        self.hosts.on_value_change(self._hosts_changed)
        self._hosts_changed()
        self.mcp_rows: dict[str, ui.row] = {}
        with ui.column().classes("w-full gap-1"):
            for server in self.servers:
                with ui.row().classes("items-center gap-2").mark(f"mcp-tools-{server.name}") as row:
                    self.mcp_rows[server.name] = row
                    ui.label(t("MCP {name}:", name=server.name)).classes("font-medium")
                    ui.label(t("listing tools…")).classes("text-sm opacity-60").mark(f"mcp-listing-{server.name}")

    @staticmethod
    def _policy(asks: bool, marker: str) -> ui.select:
        return ui.select({p: t(p) for p in POLICIES}, value="ask" if asks else "always").props("dense").mark(marker)

    def _choices(self) -> dict:
        names = [name for name in self.tools] + [tool for (_, tool) in self.mcp_tools]
        return {"auto": t("the model decides"), "required": t("must call a tool"),
                **{name: t("must call {tool}", tool=name) for name in names}}

    def _hosts_changed(self) -> None:
        """The http tool is offered only with hosts to reach."""
        box = self.tools["http"]
        if split_hosts(self.hosts.value) and hosts_problem(self.hosts.value) is None:
            box.enable()
        else:
            box.value = False
            box.disable()

    async def list_mcp_tools(self) -> None:
        """Connect to each enabled server once and offer its tools by name (or say why it cannot)."""
        for server in self.servers:
            found = await check(server)
            self._show_server(server, found.tools if found.ok else None, found.error)
        self.tool_choice.set_options(self._choices(), value=self.tool_choice.value)

    def _show_server(self, server: MCPServerSetting, tools: list[str] | None, error: str) -> None:
        row = self.mcp_rows[server.name]
        row.clear()
        with row:
            ui.label(t("MCP {name}:", name=server.name)).classes("font-medium")
            if tools is None:
                ui.label(error).classes("text-sm text-negative").mark(f"mcp-error-{server.name}")
                return
            if not tools:
                ui.label(t("no tools")).classes("text-sm opacity-60")
            for tool in tools:
                with ui.row().classes("items-center gap-1"):
                    box = ui.checkbox(tool).mark(f"mcp-tool-{server.name}-{tool}")
                    policy = self._policy(True, f"policy-mcp-{server.name}-{tool}")
                self.mcp_tools[(server.name, tool)] = (box, policy)

    def code_max_chars(self) -> int:
        return max(0, int(self.code_limit.value or 0))

    def checked_builtin(self) -> list[str]:
        return [name for name, box in self.tools.items() if box.value]

    def chosen_policies(self) -> dict[str, str]:
        policies = {name: select.value for name, select in self.policies.items()}
        policies.update({tool: select.value for (_, tool), (_, select) in self.mcp_tools.items()})
        return policies

    def mcp_specs(self) -> list:
        """The servers with at least one tool ticked, each limited to the ticked tools."""
        specs = []
        for server in self.servers:
            ticked = [tool for (name, tool), (box, _) in self.mcp_tools.items() if name == server.name and box.value]
            if ticked:
                specs.append(server.to_spec(tools=ticked))
        return specs

    def checked_names(self) -> list[str]:
        return self.checked_builtin() + [tool for (_, tool), (box, _) in self.mcp_tools.items() if box.value]

    def forced_choice(self):
        """tool_choice for the first turn: None (auto), 'required' or the named function."""
        value = self.tool_choice.value
        if value in (None, "auto"):
            return None
        if value == "required":
            return "required"
        if value not in self.checked_names():
            raise ValueError(t("The first turn must call {tool}: tick that tool too.", tool=value))
        return {"type": "function", "function": {"name": value}}

    def save_hosts(self) -> list[str]:
        """Validate the hosts and save them as the setting when they changed; ValueError says what is wrong."""
        message = hosts_problem(self.hosts.value)
        if message:
            raise ValueError(message)
        hosts = [check_allowed_host(h) for h in split_hosts(self.hosts.value)]
        current = state.settings()
        if hosts != current.agent_allowed_hosts:
            try:
                new = Settings.model_validate({**current.model_dump(), "agent_allowed_hosts": hosts})
            except ValidationError as e:
                raise ValueError(e.errors()[0]["msg"]) from None
            state.update_settings(new)
        return hosts
