"""Run Python for the agent in the sandbox: one persistent interpreter per conversation.

Model-written code never runs in our process: every cell goes to `engine.sandbox.PythonSession` (its own
process tree, limits, the workspace as its only writable place, no network). Variables persist across calls
like a notebook. The observation gives what the cell printed, its last expression, its error and the files it
wrote, which the playground shows (images included). It asks for approval by default, like any code tool.
"""

from __future__ import annotations

import threading
from pathlib import Path

from engine.agents.tools.base import Tool, tool_from_function


class PythonTool:
    """Starts the sandboxed session on the first call, so offering the tool costs nothing until it is used."""

    def __init__(self, workspace: str | Path, cell_timeout_s: float = 30.0, limits=None):
        self.workspace = Path(workspace)
        self.cell_timeout_s = cell_timeout_s
        self.limits = limits
        self._session = None
        self._lock = threading.Lock()

    def _get_session(self):
        from engine.sandbox import PythonSession

        with self._lock:
            if self._session is None:
                self._session = PythonSession(self.workspace, limits=self.limits)
            return self._session

    def python(self, code: str) -> str:
        """Run Python code in a persistent sandboxed session (no network; files only in the workspace) and return
        what it printed, the value of its last expression, its error and the files it wrote.

        Args:
            code: The Python code to run; variables from earlier calls are still defined.
        """
        result = self._get_session().run(code, timeout_s=self.cell_timeout_s)
        parts = []
        if result.stdout:
            parts.append(result.stdout.rstrip("\n"))
        if result.value is not None:
            parts.append(f"Out: {result.value}")
        if result.stderr and not result.error:
            parts.append(f"stderr:\n{result.stderr.rstrip()}")
        if result.error:
            parts.append(f"Error:\n{result.error.rstrip()}")
        if result.files:
            parts.append("Files written: " + ", ".join(result.files))
        return "\n".join(parts) or "(no output)"

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


def python_tool(workspace: str | Path, cell_timeout_s: float = 30.0, limits=None) -> Tool:
    runner = PythonTool(workspace, cell_timeout_s, limits)
    tool = tool_from_function(runner.python, approval="ask", timeout_s=cell_timeout_s + 15)
    tool.close = runner.close
    return tool
