"""The MCP client against a real SDK server: over stdio (a subprocess) and over Streamable HTTP on loopback,
used by an agent loop; a server that dies becomes an error observation, not a hang."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.agents.loops.base import AgentConfig
from engine.agents.loops.function_calling import FunctionCallingLoop
from engine.agents.mcp_client import MCPConnection, MCPServerSpec, connect_all
from engine.agents.model import Reply
from engine.agents.toolbox import Toolbox
from engine.agents.tools.base import ToolError
from engine.ports import free_port
from tests.agents.scripted import ScriptedClient, call
from tests.helpers import wait_for

SERVER = Path(__file__).with_name("mcp_server.py")
STDIO = f"{sys.executable} {SERVER} stdio"


@pytest.fixture
def stdio_connection():
    connection = MCPConnection(MCPServerSpec(name="test", command=STDIO, timeout_s=20)).start()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def http_url():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)])

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=30, what="the MCP HTTP server")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


def test_stdio_server_lists_tools_with_schemas_and_an_agent_uses_them(stdio_connection):
    tools = {t.name: t for t in stdio_connection.tools()}
    assert set(tools) == {"add", "greet", "fail", "die"}
    assert tools["add"].parameters["properties"]["a"]["type"] == "integer"
    assert tools["add"].parameters["required"] == ["a", "b"]
    assert stdio_connection.status == "connected, 4 tools"
    client = ScriptedClient(
        Reply(tool_calls=[call("add", '{"a": 20, "b": 22}')]),
        Reply(tool_calls=[call("greet", '{"name": "小明"}')]),
        Reply(tool_calls=[call("fail", '{"reason": "no such city"}')]),
        "done",
    )
    trace = FunctionCallingLoop(client, Toolbox(list(tools.values()))).run("use the tools")
    assert [s.observation for s in trace.steps[:2]] == ["42", "你好，小明！"]
    assert trace.steps[2].observation.startswith("Error: fail: MCP server 'test' reported an error: ")
    assert trace.steps[2].observation.endswith("no such city")
    assert client.requests[0]["tools"][0]["function"]["parameters"]["properties"]["b"]["type"] == "integer"
    assert trace.status == "answered"


def test_a_server_that_dies_is_an_error_observation(stdio_connection):
    client = ScriptedClient(
        Reply(tool_calls=[call("die", "{}")]), Reply(tool_calls=[call("add", '{"a": 1, "b": 2}')]), "the tools are gone"
    )
    trace = FunctionCallingLoop(client, Toolbox(stdio_connection.tools()), AgentConfig(tool_timeout_s=30)).run("x")
    died, after = trace.steps[:2]
    assert died.observation.startswith("Error: die: MCP server 'test' failed: ")
    assert "is not running" in after.error
    assert trace.status == "answered"
    assert stdio_connection.status.startswith("not running")


def test_http_server_used_by_a_react_agent(http_url):
    from engine.agents.loops.react import ReActLoop

    connection = MCPConnection(MCPServerSpec(name="web", url=http_url, prefix_tools=True)).start()
    try:
        names = sorted(t.name for t in connection.tools())
        assert names == ["web__add", "web__die", "web__fail", "web__greet"]
        client = ScriptedClient(
            'Thought: add them\nAction: web__add\nAction Input: {"a": 2, "b": 3}', "Final Answer: 5"
        )
        trace = ReActLoop(client, Toolbox(connection.tools())).run("2+3?")
        assert trace.steps[0].observation == "5" and trace.answer == "5"
    finally:
        connection.close()


def test_servers_that_cannot_start_are_reported_by_name():
    connections, problems = connect_all(
        [
            MCPServerSpec(name="missing", command="/nonexistent/mcp-server", timeout_s=5),
            MCPServerSpec(name="nobody", url=f"http://127.0.0.1:{free_port()}/mcp", timeout_s=5),
        ]
    )
    assert connections == []
    assert problems[0].startswith("MCP server 'missing' could not be started")
    assert problems[1].startswith("MCP server 'nobody' could not be started")
    with pytest.raises(ValueError, match="either a command"):
        MCPServerSpec(name="both", command="x", url="http://y").validate()
    with pytest.raises(ToolError):
        MCPConnection(MCPServerSpec(name="m", command="/nonexistent/x", timeout_s=5)).start()


def test_a_configured_server_that_exits_mid_run_is_an_error_observation_and_a_status():
    """The path the playground takes: a server from Settings, limited to the ticked tools, built by the catalog;
    the server exits during the run (its `die` tool), and the next call says it is not running."""
    from app.settings import MCPServerSetting
    from engine.agents.catalog import ToolSettings, build_tools
    from engine.agents.mcp_client import check_server

    setting = MCPServerSetting(name="tools", command=STDIO)
    assert check_server(setting.to_spec()).tools == ["add", "greet", "fail", "die"]
    built = build_tools([], ToolSettings(mcp_servers=[setting.to_spec(tools=["add", "die", "gone"])]))
    try:
        assert sorted(t.name for t in built.tools) == ["add", "die"]
        assert built.problems == ["MCP server 'tools' does not list the tools ['gone'] any more"]
        client = ScriptedClient(
            Reply(tool_calls=[call("add", '{"a": 1, "b": 2}')]),
            Reply(tool_calls=[call("die", "{}")]),
            Reply(tool_calls=[call("add", '{"a": 3, "b": 4}')]),
            "the server is gone",
        )
        trace = FunctionCallingLoop(client, Toolbox(built.tools), AgentConfig(tool_timeout_s=30)).run("x")
        first, died, after = trace.steps[:3]
        assert first.observation == "3"
        assert died.observation.startswith("Error: die: MCP server 'tools' failed: ")
        assert after.observation.startswith("Error: add: MCP server 'tools' is not running: it stopped answering")
        assert built.connections[0].status.startswith("not running: it stopped answering")
        assert trace.status == "answered" and trace.answer == "the server is gone"
    finally:
        built.close()
    assert not check_server(MCPServerSetting(name="nope", command="/nonexistent/server").to_spec()).ok


def test_check_of_an_http_server_with_headers_from_settings(http_url):
    """The Settings check over Streamable HTTP, with the headers a server behind a token needs."""
    from app.settings import MCPServerSetting
    from engine.agents.mcp_client import check_server

    setting = MCPServerSetting(name="web", url=http_url, headers={"Authorization": "Bearer abc"})
    found = check_server(setting.to_spec())
    assert found.ok and sorted(found.tools) == ["add", "die", "fail", "greet"], found.error


def test_a_server_that_never_answers_is_given_up_and_its_thread_ends():
    import socket
    import threading
    import time

    from engine.agents.mcp_client import check_server

    with socket.socket() as listener:  # the kernel accepts connections; nothing ever answers them
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        started = time.monotonic()
        found = check_server(MCPServerSpec(name="mute", url=f"http://127.0.0.1:{listener.getsockname()[1]}/mcp",
                                           timeout_s=2))
        assert not found.ok and "'mute'" in found.error
        assert time.monotonic() - started < 15
        wait_for(lambda: not any(t.name == "mcp-mute" for t in threading.enumerate()), 10,
                 what="the connection's thread to end")
