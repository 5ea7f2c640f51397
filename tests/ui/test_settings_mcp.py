"""MCP servers and the agents' allowed hosts in Settings: validated with messages naming the field, added, checked
against a real SDK server (a subprocess over stdio), edited and removed from the page, kept by the main Save."""

from __future__ import annotations

import ast
import json
import re
import sys

import pytest
from nicegui.testing import User

from app.settings import SETTINGS_FILE, MCPServerSetting, Settings, SettingsError, load_settings, save_settings
from tests.helpers import REPO, one, until

SERVER = REPO / "tests" / "agents" / "mcp_server.py"
STDIO = f"{sys.executable} {SERVER} stdio"


def write(home, data: dict) -> None:
    (home / SETTINGS_FILE).write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mcp_servers": [{"name": "x", "url": "ftp://host/mcp"}]}, "field 'mcp_servers.0.url': Value error, must "
         "start with http:// or https://"),
        ({"mcp_servers": [{"name": "x"}]}, "field 'mcp_servers.0': Value error, give either a command (stdio) or a "
         "URL (Streamable HTTP), not neither"),
        ({"mcp_servers": [{"name": "x", "command": "a", "url": "http://h/mcp"}]}, "not both"),
        ({"mcp_servers": [{"name": "bad name", "command": "a"}]}, "field 'mcp_servers.0.name'"),
        ({"mcp_servers": [{"name": "x", "command": "run 'unclosed"}]}, "field 'mcp_servers.0.command': Value error,"
         " cannot be split into words"),
        ({"mcp_servers": [{"name": "x", "command": "a", "env": {"1A": "v"}}]}, "field 'mcp_servers.0.env'"),
        ({"mcp_servers": [{"name": "x", "command": "a"}, {"name": "x", "url": "http://h/mcp"}]},
         "two servers are called 'x'"),
        ({"agent_allowed_hosts": ["docs.local", "http://evil.com/path"]}, "field 'agent_allowed_hosts': Value error, "
         "'http://evil.com/path' is not a host"),
    ],
)
def test_bad_entries_are_refused_naming_the_file_and_field(home, data, message):
    write(home, data)
    with pytest.raises(SettingsError) as e:
        load_settings(home)
    assert str(home / SETTINGS_FILE) in str(e.value) and message in str(e.value)


def test_servers_and_hosts_round_trip_and_become_engine_specs(home):
    settings = Settings(
        mcp_servers=[
            MCPServerSetting(name="tools", command=STDIO, env={"TOKEN": "x"}),
            MCPServerSetting(name="web", url="http://127.0.0.1:9000/mcp", headers={"Authorization": "Bearer t"},
                             enabled=False),
        ],
        agent_allowed_hosts=[" Docs.Local ", "*.example.com", "127.0.0.1:8080"],
    )
    save_settings(home, settings)
    loaded = load_settings(home)
    assert loaded == settings
    assert loaded.agent_allowed_hosts == ["docs.local", "*.example.com", "127.0.0.1:8080"]
    spec = loaded.mcp_servers[0].to_spec(tools=["add"])
    assert (spec.name, spec.command, spec.url, spec.env, spec.tools) == ("tools", STDIO, "", {"TOKEN": "x"}, ["add"])
    web = loaded.mcp_servers[1].to_spec()
    assert web.url == "http://127.0.0.1:9000/mcp" and web.headers == {"Authorization": "Bearer t"}
    web.validate()


def saved(home) -> dict:
    return json.loads((home / SETTINGS_FILE).read_text(encoding="utf-8"))


async def test_add_check_edit_and_remove_a_server(home, user: User):
    await user.open("/settings")
    await user.should_see("No MCP servers yet.")
    user.find(marker="mcp-add").click()
    await user.should_see(marker="mcp-dialog")
    user.find(marker="mcp-save").click()  # nothing filled in: each mistake at its field, nothing saved
    await user.should_see("use 1 to 40 letters")
    assert not (home / SETTINGS_FILE).exists()

    one(user, "mcp-name").value = "tools"
    one(user, "mcp-command").value = STDIO
    one(user, "mcp-env").value = "GREETING=hi\nnot a pair"
    user.find(marker="mcp-save").click()
    await user.should_see("line 2: write it as NAME=value")
    one(user, "mcp-env").value = "GREETING=hi"
    user.find(marker="mcp-save").click()
    await user.should_see("MCP server tools saved.")
    assert saved(home)["mcp_servers"] == [
        {"name": "tools", "command": STDIO, "url": "", "env": {"GREETING": "hi"}, "headers": {}, "enabled": True}
    ]
    await user.should_see("not checked yet")

    user.find(marker="mcp-check-tools").click()  # starts the real server, lists its tools, stops it
    await until(lambda: "(checked" in one(user, "mcp-status-tools").text, 60, "the check")
    assert re.fullmatch(r"ok, 4 tools \(checked \d\d:\d\d:\d\d\)", one(user, "mcp-status-tools").text)

    # The main Save keeps the servers, which its form does not show.
    user.find(marker="port").clear().type("9002")
    user.find(marker="save").click()
    await user.should_see("Settings saved.")
    assert saved(home)["port"] == 9002 and saved(home)["mcp_servers"][0]["name"] == "tools"

    # Edit into an HTTP server with a bad URL: refused at the URL field; then a URL nobody answers on.
    user.find(marker="mcp-edit-tools").click()
    one(user, "mcp-transport").value = "http"
    one(user, "mcp-url").value = "localhost:1/mcp"
    user.find(marker="mcp-save").click()
    await user.should_see("must start with http:// or https://")
    from engine.ports import free_port

    one(user, "mcp-url").value = f"http://127.0.0.1:{free_port()}/mcp"
    one(user, "mcp-headers").value = "Authorization: Bearer abc"
    user.find(marker="mcp-save").click()
    server = await until(lambda: load_settings(home).mcp_servers[0].url and load_settings(home).mcp_servers[0], 10,
                         "the edit saved")
    assert server.command == "" and server.env == {} and server.headers == {"Authorization": "Bearer abc"}
    await user.should_see("not checked yet")  # the last check was of the old server
    user.find(marker="mcp-check-tools").click()  # bounded by the check's timeout, however the connect fails
    await until(lambda: "(checked" in one(user, "mcp-status-tools").text, 90, "the check")
    status = one(user, "mcp-status-tools").text
    assert status.startswith("MCP server 'tools' could not be started") and "(checked " in status

    user.find(marker="mcp-remove-tools").click()
    await user.should_see("MCP server tools removed.")
    await user.should_see("No MCP servers yet.")
    assert saved(home)["mcp_servers"] == [] and saved(home)["port"] == 9002


async def test_allowed_hosts_are_checked_at_their_field_and_saved(home, user: User):
    await user.open("/settings")
    user.find(marker="agent_allowed_hosts").type("docs.local, http://x.com/")
    await user.should_see("http://x.com/ is not a host")
    user.find(marker="save").click()
    await user.should_see("Fix the marked fields first.")
    assert not (home / SETTINGS_FILE).exists()
    user.find(marker="agent_allowed_hosts").clear().type("docs.local, *.Example.com")
    user.find(marker="save").click()
    await user.should_see("Settings saved.")
    assert saved(home)["agent_allowed_hosts"] == ["docs.local", "*.example.com"]


def test_every_settings_string_has_a_chinese_translation():
    from ui.locales.zh_settings import ZH

    texts = {field.description for field in Settings.model_fields.values()}
    for path in ("ui/pages/settings.py", "ui/components/mcp_servers.py"):
        for node in ast.walk(ast.parse((REPO / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "t" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                texts.add(node.args[0].value)
    frame_words = {"Settings", "Jobs", "Telemetry"}  # the frame's own table has them
    assert sorted(texts - ZH.keys() - frame_words) == []
