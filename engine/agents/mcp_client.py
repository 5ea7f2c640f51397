"""Tools from MCP servers: a stdio server (a command) or a Streamable HTTP one (a URL), usable in any loop.

The `mcp` SDK is async; the loops are plain threads. Each server therefore gets one background thread with its
own event loop that holds the session open for the whole conversation (entering and leaving the SDK's client in
the same task, as anyio requires), and tool calls are handed to that loop. A server that exits or stops
answering does not hang or crash the run: the call comes back as an error observation that names the server
and what happened, and `status` says the same for Settings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from engine.agents.tools.base import Tool, ToolError


@dataclass
class MCPServerSpec:
    """How to reach one MCP server: `command` (stdio) or `url` (Streamable HTTP)."""

    name: str
    """A short name; its tools are offered as `<name>__<tool>` when prefix_tools is on."""
    command: str = ""
    """stdio: the command line that starts the server (split like a shell would)."""
    url: str = ""
    """Streamable HTTP: the server's endpoint, e.g. http://127.0.0.1:8000/mcp."""
    env: dict[str, str] | None = None
    """stdio: extra environment variables for the server process."""
    headers: dict[str, str] = field(default_factory=dict)
    """HTTP: headers sent with every request (an Authorization token)."""
    timeout_s: float = 30.0
    """Seconds to wait for the connection and for each answer."""
    prefix_tools: bool = False
    """Offer tools as `<name>__<tool>`, so two servers with a tool of the same name can be used together."""
    tools: list[str] = field(default_factory=list)
    """Offer only these of the server's tools (by the name it lists); empty: all of them."""

    def validate(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ValueError(
                f"MCP server {self.name!r}: give either a command (stdio) or a url (HTTP), not "
                f"{'both' if self.command else 'neither'}"
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server {self.name!r}: url {self.url!r} must start with http:// or https://")


def _errlog():
    """A stream with a real file descriptor for a server's stderr: ours, else the process's original one."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None and stream.fileno() >= 0 and not stream.closed:
                return stream
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
            continue
    return subprocess.DEVNULL


def _describe(exc: BaseException) -> str:
    """The innermost useful message of an exception (task groups wrap the real one)."""
    while getattr(exc, "exceptions", None):  # an (anyio) exception group
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def result_text(result: Any) -> str:
    """A CallToolResult as the text an agent reads: text blocks joined, other blocks named."""
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {getattr(block, 'mime_type', '')}]")
        elif kind == "resource_link":
            parts.append(f"[resource: {block.uri}]")
        else:
            parts.append(f"[{kind} content]")
    if not parts and result.structured_content is not None:
        import json

        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class MCPConnection:
    """One live session with one MCP server."""

    def __init__(self, spec: MCPServerSpec):
        spec.validate()
        self.spec = spec
        self.error = ""
        self.listed: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._client = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._pending: set[concurrent.futures.Future] = set()
        self._thread = threading.Thread(target=self._thread_main, daemon=True, name=f"mcp-{spec.name}")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._client is not None and not self.error

    @property
    def status(self) -> str:
        if self.alive:
            return f"connected, {len(self.listed)} tools"
        return f"not running: {self.error}" if self.error else "not connected"

    def start(self) -> MCPConnection:
        """Connect and list the tools; MCPConnectError says why when it cannot."""
        self._thread.start()
        if not self._ready.wait(self.spec.timeout_s + 5):
            self.error = f"no answer within {self.spec.timeout_s:g} s"
        if not self.alive:
            self.close()
            raise ToolError(f"MCP server {self.spec.name!r} could not be started: {self.error or 'it exited'}")
        return self

    def _target(self):
        from mcp.client.stdio import StdioServerParameters, stdio_client

        if self.spec.url:
            if not self.spec.headers:
                return self.spec.url
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            # Built inside the session's event loop, where the HTTP client will run.
            return streamable_http_client(self.spec.url, http_client=httpx2.AsyncClient(headers=self.spec.headers))
        command, *args = shlex.split(self.spec.command)
        # The server's stderr goes to ours as it is now: the SDK's default was bound when it was first imported,
        # possibly to a stream that is closed since (a test's capture, a redirected CLI).
        return stdio_client(StdioServerParameters(command=command, args=args, env=self.spec.env), errlog=_errlog())

    def _thread_main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._session())
        try:
            self._loop.run_until_complete(self._task)
        except BaseException as exc:
            self.error = self.error or _describe(exc)
        finally:
            if not self.error:
                self.error = "the session ended"
            self._client = None
            self._ready.set()
            for future in list(self._pending):
                if not future.done():
                    future.set_exception(ToolError(f"MCP server {self.spec.name!r} stopped: {self.error}"))
            self._loop.close()

    async def _session(self) -> None:
        from mcp import Client

        self._stop = asyncio.Event()
        async with Client(self._target(), read_timeout_seconds=self.spec.timeout_s) as client:
            self.listed = list((await client.list_tools()).tools)
            self._client = client
            self._ready.set()
            await self._stop.wait()
            self.error = self.error or "closed"

    def call(self, tool: str, arguments: dict) -> str:
        """Call a tool of this server; ToolError (read by the model) when it fails or the server is gone."""
        if not self.alive or self._loop is None:
            raise ToolError(f"MCP server {self.spec.name!r} is not running: {self.error or 'not connected'}")
        client = self._client
        coroutine = client.call_tool(tool, arguments, read_timeout_seconds=self.spec.timeout_s)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:  # the session ended (its loop closed) since the check above
            coroutine.close()
            raise ToolError(f"MCP server {self.spec.name!r} is not running: {self.error or 'it stopped'}") from None
        self._pending.add(future)
        try:
            result = future.result(self.spec.timeout_s + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolError(f"MCP server {self.spec.name!r} did not answer within {self.spec.timeout_s:g} s") from None
        except ToolError:
            raise
        except Exception as exc:
            self._check_alive(client, _describe(exc))
            state = "" if self.alive else " (the server is not running any more)"
            raise ToolError(f"MCP server {self.spec.name!r} failed: {_describe(exc)}{state}") from None
        finally:
            self._pending.discard(future)
        text = result_text(result)
        if result.is_error:
            raise ToolError(f"MCP server {self.spec.name!r} reported an error: {text}")
        return text

    def _check_alive(self, client, failure: str) -> None:
        """After a failed call: a server that no longer lists its tools is marked dead, and the session closed.
        (Listing, not ping: ping is gone from the protocol's 2026 version.)"""
        assert self._loop is not None
        probe = client.list_tools(cache_mode="bypass")
        try:
            asyncio.run_coroutine_threadsafe(probe, self._loop).result(min(5.0, self.spec.timeout_s))
        except Exception:
            self.error = f"it stopped answering ({failure})"
            with contextlib.suppress(RuntimeError):  # its loop closed already: nothing left to stop
                self._loop.call_soon_threadsafe(self._stop.set)

    def tools(self, approval: str = "always") -> list[Tool]:
        """The server's tools (those the spec names, when it names some), with the schemas it listed."""
        out = []
        for listed in self.listed:
            if self.spec.tools and listed.name not in self.spec.tools:
                continue
            name = f"{self.spec.name}__{listed.name}" if self.spec.prefix_tools else listed.name
            out.append(
                Tool(
                    name=name,
                    description=listed.description or listed.name,
                    parameters=listed.input_schema or {"type": "object", "properties": {}},
                    fn=_caller(self, listed.name),
                    approval=approval,
                    timeout_s=self.spec.timeout_s + 5,
                )
            )
        return out

    def close(self) -> None:
        # The session's loop closes when its thread ends, which can happen between any check here and the call:
        # a loop that is already closed has nothing left to stop (RuntimeError: Event loop is closed).
        if self._loop is not None and self._thread.is_alive():
            if self._stop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(2.0)
            if self._thread.is_alive() and self._task is not None:  # still connecting to a server that never answers
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread.is_alive():
            self._thread.join(self.spec.timeout_s)


def _caller(connection: MCPConnection, tool: str):
    def call(**arguments):
        return connection.call(tool, arguments)

    return call


@dataclass
class ServerCheck:
    """What a check of one server found: its tools, or why it could not be used."""

    ok: bool
    tools: list[str] = field(default_factory=list)
    error: str = ""


def check_server(spec: MCPServerSpec) -> ServerCheck:
    """Connect, list the tools and disconnect: the status Settings shows and the tools the playground offers."""
    try:
        connection = MCPConnection(spec).start()
    except (ToolError, ValueError) as exc:
        return ServerCheck(ok=False, error=str(exc))
    try:
        return ServerCheck(ok=True, tools=[listed.name for listed in connection.listed])
    finally:
        connection.close()


def connect_all(specs: list[MCPServerSpec]) -> tuple[list[MCPConnection], list[str]]:
    """Connect to every server that answers; (connections, one message per server that did not)."""
    connections, problems = [], []
    for spec in specs:
        try:
            connections.append(MCPConnection(spec).start())
        except (ToolError, ValueError) as exc:
            problems.append(str(exc))
    return connections, problems
