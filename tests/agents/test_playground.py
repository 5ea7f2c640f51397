"""The Agent playground with NiceGUI's User: a run against a scripted model server pauses for approval with the
exact arguments, streams its step cards and answer, is stored and rated, and is exported as a dataset."""

from __future__ import annotations

import ast
import json
import sys

import pytest
from nicegui.testing import User
from sqlmodel import select

from app import agents
from app.db import session
from app.settings import MCPServerSetting, Settings, load_settings
from app.tables import Dataset
from tests.helpers import REPO, one, until

MCP_STDIO = f"{sys.executable} {REPO / 'tests' / 'agents' / 'mcp_server.py'} stdio"


async def test_run_with_approval_then_rate_and_export(home, scripted_server, user: User):
    url, requests = scripted_server
    await user.open("/agents")
    await user.should_see("No runs yet.")
    one(user, "agent-url").value = url
    one(user, "policy-calculator").value = "ask"
    one(user, "agent-question").value = "What is 6*7?"
    user.find(marker="agent-run").click()
    await user.should_see(marker="approval", retries=50)
    assert '"expression": "6*7"' in one(user, "approval-arguments").content
    user.find(marker="approve-once").click()
    await user.should_see(marker="answer", retries=50)
    assert one(user, "observation-0").text == "42"
    (run,) = await until(lambda: agents.list_runs(home), 10, "the run stored")
    assert run.status == "answered" and run.answer == "6 × 7 = 42"
    await user.should_see(marker=f"run-{run.id}", retries=30)

    one(user, f"rate-run-{run.id}").value = 5
    await until(lambda: agents.get_run(home, run.id).rating == 5, 10, "the rating saved")
    one(user, f"select-run-{run.id}").value = True
    one(user, "export-name").value = "good-agent-runs"
    user.find(marker="export-runs").click()
    await user.should_see("Dataset good-agent-runs written with 1 runs.", retries=30)
    with session(home) as s:
        dataset = s.exec(select(Dataset).where(Dataset.name == "good-agent-runs")).one()
    assert dataset.inputs == [f"agent_run:{run.id}"]
    assert len(requests) == 2


def test_every_playground_string_has_a_chinese_translation():
    from ui.locales.zh_agents import ZH

    texts = set()
    source = "\n".join((REPO / p).read_text(encoding="utf-8") for p in ("ui/pages/agents.py",
                                                                        "ui/components/agent_tools.py"))
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "t"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            texts.add(node.args[0].value)
    assert sorted(texts - ZH.keys()) == []


def test_images_the_python_tool_wrote_are_shown_from_the_workspace_only(tmp_path):
    from ui.pages.agents import _images

    workspace = (tmp_path / "ws").resolve()
    workspace.mkdir()
    (workspace / "plot.png").write_bytes(b"\x89PNG")
    (workspace / "data.csv").write_text("x")
    (tmp_path / "outside.png").write_bytes(b"\x89PNG")
    observation = "Out: 1\nFiles written: data.csv, plot.png, ../outside.png, missing.png"
    assert _images(workspace, observation) == [workspace / "plot.png"]


async def test_start_its_server_submits_a_serve_job(home, bundled_model_dir, user: User):
    from app.registry import register_folder
    from jobs.servers import server_for

    register_folder(home, bundled_model_dir, name="smol")
    await user.open("/agents")
    assert one(user, "agent-model").value == "smol"
    user.find(marker="agent-serve").click()
    job = await until(lambda: server_for(home, "smol"), 10, "the serve job")
    assert job.params["model"] == "smol"
    await user.should_see(f"Server of smol: job {job.id} (queued); run once it is running.")


def tool_call(name: str, arguments: dict) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ],
    }


def present(user: User, marker: str) -> bool:
    try:
        return bool(user.find(marker=marker).elements)
    except AssertionError:  # find insists on at least one
        return False


@pytest.fixture
def replies(monkeypatch):
    """Script the model server's replies for one test."""
    from tests.agents import conftest

    def script(*messages):
        monkeypatch.setattr(conftest, "REPLIES", list(messages))

    return script


async def test_mcp_tools_from_settings_are_offered_by_name_and_the_first_turn_is_forced(
    home, scripted_server, replies, user: User
):
    url, requests = scripted_server
    from ui import state

    state.init(home)  # the web process reads its settings once; these are set before the page opens
    state.update_settings(Settings(mcp_servers=[MCPServerSetting(name="tools", command=MCP_STDIO),
                                                MCPServerSetting(name="off", command=MCP_STDIO, enabled=False)]))
    replies(tool_call("add", {"a": 20, "b": 22}), {"role": "assistant", "content": "20 + 22 = 42"})
    await user.open("/agents")
    await until(lambda: present(user, "mcp-tool-tools-add"), 60, "the server's tools listed")
    assert not present(user, "mcp-tools-off")  # a disabled server is not offered
    for tool in ("greet", "fail", "die"):
        assert present(user, f"mcp-tool-tools-{tool}")
    assert one(user, "policy-mcp-tools-add").value == "ask"  # outside tools ask first unless told otherwise
    one(user, "policy-mcp-tools-add").value = "always"
    one(user, "mcp-tool-tools-add").value = True
    one(user, "tool-calculator").value = False
    one(user, "agent-tool-choice").value = "add"
    one(user, "agent-url").value = url
    one(user, "agent-question").value = "What is 20 + 22?"
    user.find(marker="agent-run").click()
    await user.should_see(marker="answer", retries=100)
    assert one(user, "observation-0").text == "42"
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["add"]  # only the ticked tool is offered
    assert requests[0]["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert "tool_choice" not in requests[1] or requests[1]["tool_choice"] == "auto"


async def test_http_tool_is_offered_once_hosts_are_given_and_the_hosts_are_saved(
    home, scripted_server, replies, user: User
):
    url, requests = scripted_server
    host = url.removeprefix("http://")
    replies(tool_call("http_request", {"url": f"{url}/v1/models"}), {"role": "assistant", "content": "One model."})
    await user.open("/agents")
    assert not one(user, "tool-http").enabled  # no hosts yet: nothing it could reach
    one(user, "agent-hosts").value = "http://not-a-host/"
    assert not one(user, "tool-http").enabled
    one(user, "agent-hosts").value = host
    assert one(user, "tool-http").enabled
    one(user, "tool-http").value = True
    one(user, "policy-http").value = "always"
    one(user, "agent-url").value = url
    one(user, "agent-question").value = "Which models does the server list?"
    user.find(marker="agent-run").click()
    await user.should_see(marker="answer", retries=100)
    observation = one(user, "observation-0").text
    assert observation.startswith("HTTP 200") and '"scripted"' in observation, observation
    assert load_settings(home).agent_allowed_hosts == [host]
    await user.open("/agents")  # the next visit offers the same hosts
    assert one(user, "agent-hosts").value == host and one(user, "tool-http").enabled


async def test_an_image_the_python_tool_wrote_is_shown(home, scripted_server, replies, user: User):
    url, _ = scripted_server
    png = (  # a 1x1 PNG
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
    code = f"open('dot.png', 'wb').write(bytes.fromhex('{png}'))"
    replies(tool_call("python", {"code": code}), {"role": "assistant", "content": "Drawn."})
    await user.open("/agents")
    one(user, "tool-python").value = True
    one(user, "policy-python").value = "always"
    one(user, "agent-url").value = url
    one(user, "agent-question").value = "Draw a dot."
    user.find(marker="agent-run").click()
    await user.should_see(marker="answer", retries=150)
    assert "Files written: dot.png" in one(user, "observation-0").text
    image = one(user, "image-0")
    assert image.props["src"].endswith("/dot.png"), image.props


def test_a_python_code_limit_is_declared_in_the_schema_and_enforced(tmp_path):
    from engine.agents.catalog import ToolSettings, build_tools
    from engine.agents.toolbox import Toolbox

    built = build_tools(["python"], ToolSettings(workspace=str(tmp_path), python_code_max_chars=12))
    try:
        (tool,) = built.tools
        assert tool.parameters["properties"]["code"]["maxLength"] == 12
        outcome = Toolbox(built.tools, policies={"python": "always"}).call("python", {"code": "print('far too long')"})
        assert outcome.error.startswith("the arguments for python do not fit its schema at code: "), outcome.error
    finally:
        built.close()
    unbounded = build_tools(["python"], ToolSettings(workspace=str(tmp_path)))
    assert "maxLength" not in unbounded.tools[0].parameters["properties"]["code"]  # the tool's own schema untouched
    unbounded.close()


async def test_a_server_that_dies_during_a_run_is_an_error_step_and_a_status_in_settings(
    home, scripted_server, replies, user: User
):
    from ui import state

    url, _ = scripted_server
    state.init(home)
    state.update_settings(Settings(mcp_servers=[MCPServerSetting(name="tools", command=MCP_STDIO)]))
    replies(tool_call("die", {}), {"role": "assistant", "content": "The server is gone."})
    await user.open("/agents")
    await until(lambda: present(user, "mcp-tool-tools-die"), 60, "the server's tools listed")
    one(user, "mcp-tool-tools-die").value = True
    one(user, "policy-mcp-tools-die").value = "always"
    one(user, "agent-url").value = url
    one(user, "agent-question").value = "Stop the server."
    user.find(marker="agent-run").click()
    await user.should_see(marker="answer", retries=150)
    assert one(user, "observation-0").text.startswith("Error: die: MCP server 'tools' failed: ")
    await user.open("/settings")
    status = one(user, "mcp-status-tools").text
    assert status.startswith("stopped during an agent run: it stopped answering") and "(checked " in status
