"""A real MCP server written with the SDK, for the client tests: `python mcp_server.py stdio` or `... http PORT`.

Its tools cover what an agent meets: a typed call, Chinese text, an error the tool reports itself, and a call
that kills the server mid-conversation.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("inkstone-test-tools", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def greet(name: str) -> str:
    """Greet someone, in Chinese."""
    return f"你好，{name}！"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason given."""
    raise ToolError(reason)


@server.tool()
def die() -> str:
    """Ends the server process at once, as a crash would."""
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
