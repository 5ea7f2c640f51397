"""`inkstone agent` end to end against an OpenAI-compatible server on loopback whose replies are scripted: the
CLI resolves the URL, builds the tools, streams the steps to stderr, prints the answer and stores the run."""

from __future__ import annotations

import pytest

import cli


def test_agent_command_streams_steps_and_prints_the_answer(scripted_server, home, capsys):
    url, requests = scripted_server
    code = cli.main(
        ["--data-dir", str(home), "agent", url, "What is 6*7?", "--tools", "calculator", "--force-tool", "calculator"]
    )
    out, err = capsys.readouterr()
    assert code == 0 and out == "6 × 7 = 42\n"
    assert '[0] calculator {"expression": "6*7"}' in err and "→ 42" in err
    assert requests[0]["tool_choice"] == {"type": "function", "function": {"name": "calculator"}}
    assert requests[0]["model"] == "scripted" and "tool_choice" not in requests[1]
    assert requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}
    from app.agents import list_runs

    (run,) = list_runs(home)
    assert run.answer == "6 × 7 = 42" and run.loop == "function_calling" and f"agent run {run.id}" in err


def test_agent_command_refuses_an_unknown_tool(home, capsys):
    assert cli.main(["--data-dir", str(home), "agent", "http://127.0.0.1:9", "q", "--tools", "shell"]) == 2
    assert "unknown tools ['shell']" in capsys.readouterr().err


def test_mcp_server_command_refuses_a_public_address_without_a_token(home, capsys, monkeypatch):
    monkeypatch.delenv("INKSTONE_TOKEN", raising=False)
    assert cli.main(["--data-dir", str(home), "mcp-server", "--host", "0.0.0.0"]) == 2
    assert "needs an access token (--token or INKSTONE_TOKEN)" in capsys.readouterr().err


def test_agent_bench_scores_bfcl_against_a_server(scripted_server, home, capsys):
    import json

    pytest.importorskip("bfcl_eval")
    url, requests = scripted_server  # its first reply calls the calculator: wrong for BFCL's first items
    assert cli.main(["--data-dir", str(home), "agent-bench", url, "--bench", "bfcl:irrelevance", "--limit", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"bench": "bfcl:irrelevance", "model": url, "accuracy": 0.5, "items": 2}
    assert len(requests) == 2 and requests[0]["tools"][0]["function"]["parameters"]["type"] == "object"


def test_agent_command_uses_mcp_servers_and_hosts_set_in_settings(scripted_server, home, capsys):
    import sys
    from pathlib import Path

    from app.settings import MCPServerSetting, load_settings, save_settings

    server = Path(__file__).with_name("mcp_server.py")
    settings = load_settings(home)
    settings.mcp_servers = [MCPServerSetting(name="demo", command=f"{sys.executable} {server} stdio")]
    settings.agent_allowed_hosts = ["example.org"]
    save_settings(home, settings)
    url, requests = scripted_server
    code = cli.main(["--data-dir", str(home), "agent", url, "What is 6*7?", "--tools", "calculator,http",
                     "--mcp", "demo", "--no-save"])
    assert code == 0, capsys.readouterr().err
    offered = {tool["function"]["name"] for tool in requests[0]["tools"]}
    assert {"add", "greet", "http_request"} <= offered  # the server named in Settings, and http thanks to its hosts
