"""Inkstone's own MCP server, driven by the SDK's client through our MCP client: list the store, start a job and
read its status; beyond loopback it needs a token, and a client without it is refused."""

from __future__ import annotations

import json

import pytest

from engine.agents.mcp_client import MCPConnection, MCPServerSpec
from engine.agents.toolbox import Toolbox
from engine.agents.tools.base import ToolError
from jobs.mcp_server import http_app
from tests.serve.conftest import ServerThread


@pytest.fixture
def inkstone_mcp(home):
    servers = []

    def start(token: str = "") -> str:
        thread = ServerThread(http_app(home, token=token))
        servers.append(thread)
        return f"http://127.0.0.1:{thread.port}/mcp"

    yield start
    for thread in servers:
        thread.stop()


def test_an_agent_lists_the_store_starts_a_job_and_reads_its_status(inkstone_mcp, home):
    connection = MCPConnection(MCPServerSpec(name="inkstone", url=inkstone_mcp())).start()
    try:
        box = Toolbox(connection.tools())
        assert set(box.tools) == {"models", "datasets", "jobs", "job_kinds", "start_job", "job_status", "cancel_job"}
        assert json.loads(box.call("models", {}).observation) == {"result": []}
        kinds = box.call("job_kinds", {}).observation
        assert "finetune" in kinds and "export_gguf" in kinds
        started = box.call("start_job", {"kind": "import_model", "params": {"bundled": True}})
        assert not started.error, started.observation
        job = json.loads(started.observation)
        assert job["kind"] == "import_model" and job["status"] == "queued"
        status = json.loads(box.call("job_status", {"job_id": job["id"]}).observation)
        assert status["id"] == job["id"] and status["status"] == "queued"
        refused = box.call("start_job", {"kind": "shell", "params": {}})
        assert "cannot be started here" in refused.observation
        assert "no job with id 999" in box.call("job_status", {"job_id": 999}).observation
        cancelled = json.loads(box.call("cancel_job", {"job_id": job["id"]}).observation)
        assert cancelled["status"] == "cancelled"
    finally:
        connection.close()


def test_a_token_is_needed_beyond_loopback_and_checked(inkstone_mcp, home):
    with pytest.raises(ValueError, match="needs an access token"):
        http_app(home, host="0.0.0.0")
    with pytest.raises(ValueError, match="needs an access token"):
        http_app(home, host="192.168.1.20")
    url = inkstone_mcp(token="s3cret")
    with pytest.raises(ToolError, match="could not be started"):
        MCPConnection(MCPServerSpec(name="no-token", url=url, timeout_s=10)).start()
    spec = MCPServerSpec(name="with-token", url=url, headers={"Authorization": "Bearer s3cret"})
    connection = MCPConnection(spec).start()
    try:
        assert "start_job" in {t.name for t in connection.tools()}
    finally:
        connection.close()
