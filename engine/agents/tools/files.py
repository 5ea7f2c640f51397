"""Read, write and list files inside one workspace folder, and nowhere else.

The agent's working files (and the Python session's) live in a workspace; a path that leaves it — `..`, an
absolute path elsewhere, or a symlink pointing out — is refused with a message, so a model cannot read keys or
overwrite the user's files. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engine.agents.tools.base import Tool, ToolError, tool_from_function

MAX_READ_BYTES = 200_000


class Workspace:
    """A folder the agent may use; `resolve` is the one gate every path goes through."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        if not path or "\x00" in path:
            raise ToolError(f"{path!r} is not a usable path")
        candidate = Path(path)
        if candidate.is_absolute():
            candidate = Path(os.path.normpath(candidate))
        else:
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolError(f"{path!r} is outside the workspace; use paths inside it, like 'notes.txt'")
        return resolved

    def read_file(self, path: str) -> str:
        """Read a text file from the workspace.

        Args:
            path: The file's path relative to the workspace, e.g. "notes/todo.md".
        """
        target = self.resolve(path)
        if not target.is_file():
            raise ToolError(f"{path!r} does not exist in the workspace")
        data = target.read_bytes()
        if len(data) > MAX_READ_BYTES:
            raise ToolError(f"{path!r} is {len(data)} bytes; the limit is {MAX_READ_BYTES}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path!r} is not UTF-8 text") from None

    def write_file(self, path: str, content: str) -> str:
        """Write a text file in the workspace (replacing it if it exists).

        Args:
            path: The file's path relative to the workspace, e.g. "report.md".
            content: The text to write.
        """
        target = self.resolve(path)
        if target == self.root or target.is_dir():
            raise ToolError(f"{path!r} is a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return f"wrote {len(content.encode('utf-8'))} bytes to {target.relative_to(self.root).as_posix()}"

    def list_files(self, folder: str = ".") -> str:
        """List the files in a workspace folder.

        Args:
            folder: The folder relative to the workspace; "." is the workspace itself.
        """
        target = self.resolve(folder)
        if not target.is_dir():
            raise ToolError(f"{folder!r} is not a folder in the workspace")
        entries = sorted(
            p.relative_to(self.root).as_posix() + ("/" if p.is_dir() else "")
            for p in target.iterdir()
            if not p.name.startswith(".tmp-")
        )
        return "\n".join(entries) or "(empty)"


def file_tools(workspace: Workspace) -> list[Tool]:
    return [
        tool_from_function(workspace.read_file),
        tool_from_function(workspace.write_file),
        tool_from_function(workspace.list_files),
    ]
