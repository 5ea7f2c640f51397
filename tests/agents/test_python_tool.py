"""The Python tool runs model code only in the sandbox: state persists across calls, no network, files stay in
the workspace, a runaway cell is killed and reported, and the tool asks for approval by default."""

from __future__ import annotations

import pytest

from engine.agents.toolbox import Toolbox
from engine.agents.tools.python import python_tool


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("py-ws")
    toolbox = Toolbox([python_tool(workspace, cell_timeout_s=5)], policies={"python": "always"})
    yield toolbox, workspace
    toolbox.close()


def test_state_persists_and_files_are_reported(box):
    toolbox, workspace = box
    assert toolbox.call("python", {"code": "x = 21\nprint('半')\nx * 2"}).observation == "半\nOut: 42"
    outcome = toolbox.call("python", {"code": "open('out.txt', 'w').write('q')\nx"})
    assert outcome.observation == "Out: 21\nFiles written: out.txt" and (workspace / "out.txt").read_text() == "q"


def test_errors_network_and_runaway_cells(box):
    toolbox, _ = box
    error = toolbox.call("python", {"code": "1 / 0"}).observation
    assert error.startswith("Error:") and error.endswith("ZeroDivisionError: division by zero")
    code = "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)"
    assert "Network is unreachable" in toolbox.call("python", {"code": code}).observation
    escaped = toolbox.call("python", {"code": "open('/tmp/inkstone-agent-escape.txt', 'w')"}).observation
    assert escaped.startswith("Error:")
    runaway = toolbox.call("python", {"code": "while True: pass"}).observation
    assert "ran longer than 5 s and was killed" in runaway and "earlier variables are lost" in runaway


def test_asks_for_approval_by_default(tmp_path):
    toolbox = Toolbox([python_tool(tmp_path)])
    outcome = toolbox.call("python", {"code": "print(1)"})
    assert "needs the user's approval" in outcome.error
    toolbox.close()
