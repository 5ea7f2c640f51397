"""The user's own tools: every public function in the `.py` files of a tools folder becomes a tool.

As in Lagent's `tool_api`, the function is the whole definition: its name, type hints and Google-style
docstring (`Args:` section) give the schema the model sees. A function can set `fn.approval = "ask"` (or
"never") to change its default approval. A file that does not import, or a function without hints or a
docstring, is reported with the file and the function and left out; the other tools still load.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from engine.agents.tools.base import Tool, tool_from_function


def load_user_tools(folder: str | Path) -> tuple[list[Tool], list[str]]:
    """(tools, problems): the tools found in folder/*.py, and one message for each thing that was left out."""
    folder = Path(folder)
    tools: list[Tool] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    if not folder.is_dir():
        return tools, [f"{folder}: tools folder does not exist"]
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"inkstone_user_tools.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            problems.append(f"{path}: could not be imported: {type(exc).__name__}: {exc}")
            continue
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or fn.__module__ != module_name:
                continue
            if name in seen:
                problems.append(f"{path}: function {name}: a tool of that name was already loaded from {seen[name]}")
                continue
            try:
                tools.append(tool_from_function(fn, approval=getattr(fn, "approval", "always")))
                seen[name] = path.name
            except (TypeError, NameError) as exc:
                problems.append(f"{path}: function {name}: {exc}")
    return tools, problems
