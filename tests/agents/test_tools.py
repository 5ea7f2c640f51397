"""Each built-in tool against real inputs: arithmetic, a workspace on disk, BM25 over English and Chinese files,
HTTP to a real server on loopback, and a folder of user tools."""

from __future__ import annotations

import http.server
import os
import threading
from typing import Literal

import pytest

from engine.agents.toolbox import Toolbox
from engine.agents.tools.base import ToolError, tool_from_function
from engine.agents.tools.calculator import calculator_tool, evaluate
from engine.agents.tools.doc_search import DocumentIndex, doc_search_tool, tokenize
from engine.agents.tools.files import Workspace, file_tools
from engine.agents.tools.http import http_tool
from engine.agents.tools.user_tools import load_user_tools


def test_calculator_evaluates_without_eval_and_refuses_the_rest():
    assert evaluate("(3 + 4) * 2") == 14 and evaluate("2^10") == 1024 and evaluate("7 ÷ 2") == 3.5
    assert evaluate("sqrt(16) + pi") == pytest.approx(4 + 3.14159265, rel=1e-6)
    for expression, why in [
        ("__import__('os').system('true')", "not allowed"),
        ("9**9**9", "exponent"),
        ("1/0", "divides by zero"),
        ("x + 1", "'x' is not allowed"),
        ("2 +", "not an arith"),
    ]:
        with pytest.raises(ToolError, match=why):
            evaluate(expression)


def test_schema_from_hints_and_docstring():
    def convert(amount: float, unit: Literal["kg", "lb"], precise: bool = False, tags: list[str] | None = None):
        """Convert a weight.

        Args:
            amount: How much.
            unit: The unit it is in.
            precise: Keep all decimals.
        """

    tool = tool_from_function(convert)
    assert tool.description == "Convert a weight."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "description": "How much."},
            "unit": {"enum": ["kg", "lb"], "description": "The unit it is in."},
            "precise": {"type": "boolean", "description": "Keep all decimals.", "default": False},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["amount", "unit"],
    }
    assert calculator_tool().parameters["required"] == ["expression"]

    def undocumented(x: int):
        pass

    with pytest.raises(TypeError, match="needs a docstring"):
        tool_from_function(undocumented)


def test_workspace_files_stay_inside(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    (tmp_path / "secret.txt").write_text("key")
    box = Toolbox(file_tools(workspace))
    assert box.call("write_file", {"path": "notes/a.md", "content": "你好"}).observation.startswith("wrote 6 bytes")
    assert box.call("read_file", {"path": "notes/a.md"}).observation == "你好"
    assert box.call("list_files", {}).observation == "notes/"
    for path in ("../secret.txt", str(tmp_path / "secret.txt"), "notes/../../secret.txt"):
        outcome = box.call("read_file", {"path": path})
        assert "outside the workspace" in outcome.error, path
    os.symlink(tmp_path / "secret.txt", workspace.root / "link.txt")
    assert "outside the workspace" in box.call("read_file", {"path": "link.txt"}).error
    assert "outside the workspace" in box.call("write_file", {"path": "../x.txt", "content": "x"}).error
    assert not (tmp_path / "x.txt").exists()


def test_chinese_and_english_documents_are_searchable(tmp_path):
    assert tokenize("机器学习 is FUN") == ["机器", "器学", "学习", "is", "fun"]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tea.md").write_text("龙井茶产于杭州西湖。\n\n绿茶需要用八十度的水冲泡。", encoding="utf-8")
    (docs / "coffee.md").write_text("Espresso is brewed by forcing hot water through ground coffee.", encoding="utf-8")
    (docs / "rail.txt").write_text("高速铁路连接北京和上海，全程约四个半小时。", encoding="utf-8")
    index = DocumentIndex()
    assert index.add_folder(docs) == 3
    box = Toolbox([doc_search_tool(index)])
    top = box.call("search_documents", {"query": "西湖的茶", "top_k": 1}).observation
    assert top.startswith("[1] tea.md") and "龙井" in top
    assert "rail.txt" in box.call("search_documents", {"query": "北京到上海要多久"}).observation.split("\n")[0]
    assert "coffee.md" in box.call("search_documents", {"query": "how is espresso brewed"}).observation
    assert box.call("search_documents", {"query": "量子"}).observation == "no passage matches '量子'"


@pytest.fixture
def local_site():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://example.invalid/")
                self.end_headers()
                return
            body = f"page {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_only_to_allowed_hosts(local_site):
    box = Toolbox([http_tool([local_site])])
    assert box.call("http_request", {"url": f"http://{local_site}/hello"}).observation == "HTTP 200\npage /hello"
    refused = box.call("http_request", {"url": "http://localhost:9/"})
    assert "not on the allowed hosts" in refused.error
    assert "not on the allowed hosts" in box.call("http_request", {"url": f"http://{local_site}/away"}).error
    assert "no hosts are allowed" in Toolbox([http_tool([])]).call("http_request", {"url": "http://a/"}).error


def test_user_tools_folder(tmp_path):
    (tmp_path / "weather.py").write_text('''
def forecast(city: str, days: int = 1) -> dict:
    """Tomorrow's weather for a city.

    Args:
        city: The city.
        days: How many days ahead.
    """
    return {"city": city, "days": days, "sky": "clear"}

def shell(command: str) -> str:
    """Run a command (the user marks it as needing approval)."""
    return command

shell.approval = "ask"

def _helper(x):
    return x
''')
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    (tmp_path / "untyped.py").write_text('def f(x):\n    """Does f."""\n')
    tools, problems = load_user_tools(tmp_path)
    assert sorted(t.name for t in tools) == ["forecast", "shell"]
    assert {t.name: t.approval for t in tools} == {"forecast": "always", "shell": "ask"}
    assert any("broken.py" in p and "could not be imported" in p for p in problems)
    assert any("untyped.py" in p and "'x' needs a type hint" in p for p in problems)
    outcome = Toolbox(tools).call("forecast", {"city": "杭州"})
    assert outcome.observation == '{"city": "杭州", "days": 1, "sky": "clear"}'


def test_catalog_builds_named_tools_and_reports_what_it_left_out(tmp_path):
    from engine.agents.catalog import ToolSettings, build_tools

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("西湖在杭州。", encoding="utf-8")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "calc.py").write_text('def calculator(expression: str) -> str:\n    """Mine."""\n')
    settings = ToolSettings(
        workspace=str(tmp_path / "ws"),
        documents=[str(tmp_path / "docs"), "/nonexistent.md"],
        tools_folder=str(tmp_path / "user"),
    )
    built = build_tools(["calculator", "files", "search"], settings)
    names = [t.name for t in built.tools]
    assert names == ["calculator", "read_file", "write_file", "list_files", "search_documents"]
    assert any("/nonexistent.md: no such file" in p for p in built.problems)
    assert any("second tool named 'calculator'" in p for p in built.problems)
    assert "a.md" in Toolbox(built.tools).call("search_documents", {"query": "杭州"}).observation
    built.close()
    with pytest.raises(ValueError, match="unknown tools \\['shell'\\]"):
        build_tools(["shell"], settings)
    with pytest.raises(ValueError, match="need a workspace"):
        build_tools(["python"], ToolSettings())
