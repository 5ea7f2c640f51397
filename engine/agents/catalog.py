"""The built-in tools by name, so the CLI, the playground and the job build the same toolbox from a list.

`--tools python,calculator` on the command line and the tool checkboxes in the playground both end here: one
name a tool family, one settings object for what they need (a workspace, the documents to search, the hosts
HTTP may reach, a folder of user tools, MCP servers).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from engine.agents.mcp_client import MCPConnection, MCPServerSpec
from engine.agents.tools.base import Tool, ToolError

BUILTIN = ("calculator", "python", "files", "search", "http")
"""calculator; python (sandboxed session); files (read/write/list in the workspace); search (BM25 over the
documents); http (allow-listed hosts only)."""


@dataclass
class ToolSettings:
    workspace: str = ""
    """Folder the python and files tools work in (created if missing)."""
    documents: list[str] = field(default_factory=list)
    """Files or folders the search tool indexes."""
    allowed_hosts: list[str] = field(default_factory=list)
    """Hosts the http tool may reach (host, host:port or *.domain)."""
    tools_folder: str = ""
    """A folder of .py files whose typed, documented functions become tools."""
    mcp_servers: list[MCPServerSpec] = field(default_factory=list)
    """MCP servers whose tools are offered too."""
    python_cell_timeout_s: float = 30.0
    """Seconds one Python cell may run."""
    python_code_max_chars: int = 0
    """Longest code one Python call may carry (0: no limit). Declared as the argument's maxLength, so a server
    that decodes tool calls under a grammar closes the code string there: a small model otherwise never ends it."""


@dataclass
class BuiltTools:
    """Tools ready for a Toolbox, the connections behind them, and what could not be loaded."""

    tools: list[Tool] = field(default_factory=list)
    connections: list[MCPConnection] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def close(self) -> None:
        for tool in self.tools:
            if tool.close is not None:
                tool.close()
        for connection in self.connections:
            connection.close()


def build_tools(names: list[str], settings: ToolSettings) -> BuiltTools:
    """The named built-in tools plus user tools and MCP tools; ValueError names an unknown tool or missing setting."""
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise ValueError(f"unknown tools {unknown}; the built-in tools are {', '.join(BUILTIN)}")
    if {"python", "files"} & set(names) and not settings.workspace:
        raise ValueError("the python and files tools need a workspace folder")
    built = BuiltTools()
    for name in names:
        if name == "calculator":
            from engine.agents.tools.calculator import calculator_tool

            built.tools.append(calculator_tool())
        elif name == "python":
            from engine.agents.tools.python import python_tool

            tool = python_tool(settings.workspace, settings.python_cell_timeout_s)
            if settings.python_code_max_chars:
                tool.parameters = copy.deepcopy(tool.parameters)
                tool.parameters["properties"]["code"]["maxLength"] = settings.python_code_max_chars
            built.tools.append(tool)
        elif name == "files":
            from engine.agents.tools.files import Workspace, file_tools

            built.tools += file_tools(Workspace(settings.workspace))
        elif name == "search":
            built.tools.append(_search_tool(settings.documents, built.problems))
        elif name == "http":
            from engine.agents.tools.http import http_tool

            built.tools.append(http_tool(settings.allowed_hosts))
    if settings.tools_folder:
        from engine.agents.tools.user_tools import load_user_tools

        tools, problems = load_user_tools(settings.tools_folder)
        built.tools += tools
        built.problems += problems
    for spec in settings.mcp_servers:
        try:
            connection = MCPConnection(spec).start()
        except (ToolError, ValueError) as exc:
            built.problems.append(str(exc))
            continue
        built.connections.append(connection)
        built.tools += connection.tools()
        missing = sorted(set(spec.tools) - {listed.name for listed in connection.listed})
        if missing:
            built.problems.append(f"MCP server {spec.name!r} does not list the tools {missing} any more")
    seen: set[str] = set()
    unique = []
    for tool in built.tools:
        if tool.name in seen:
            built.problems.append(
                f"a second tool named {tool.name!r} was left out (name MCP servers' tools apart with prefix_tools)"
            )
            continue
        seen.add(tool.name)
        unique.append(tool)
    built.tools = unique
    return built


def _search_tool(documents: list[str], problems: list[str]) -> Tool:
    from engine.agents.tools.doc_search import DocumentIndex, doc_search_tool

    index = DocumentIndex()
    for entry in documents:
        path = Path(entry).expanduser()
        try:
            index.add_folder(path) if path.is_dir() else index.add_file(path)
        except ToolError as exc:
            problems.append(str(exc))
    return doc_search_tool(index)
