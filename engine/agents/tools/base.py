"""A tool is a name, a description, a JSON schema for its arguments and a function; most are made from a function.

Built-in tools and the user's own tools are both plain Python functions with type hints and a docstring, as in
Lagent's `tool_api`: the schema the model sees is generated from the signature (types, defaults) and the
docstring's `Args:` section (one line per parameter), so a tool's description cannot drift from its code.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

APPROVALS = ("always", "ask", "never")
"""always: runs without asking; ask: every call waits for the user's approval; never: refused."""


class ToolError(Exception):
    """A tool failed in a way the model should read about (bad input, refused path, a dead server)."""


@dataclass
class Tool:
    """Something the agent can call."""

    name: str
    """The name the model calls it by (letters, digits, _ and -)."""
    description: str
    """What it does, for the model."""
    parameters: dict
    """JSON schema of the arguments object."""
    fn: Callable[..., Any]
    """Called with the arguments as keyword arguments; returns the observation (text, or anything JSON-able)."""
    approval: str = "always"
    """Default approval policy (one of APPROVALS); code and shell-like tools default to 'ask'."""
    timeout_s: float | None = None
    """Its own time limit, when it needs a different one than the loop's per-tool limit."""
    close: Callable[[], None] | None = field(default=None, repr=False)
    """Releases what the tool holds (a sandbox session, a server connection), if anything."""

    def schema(self) -> dict:
        """The tool in OpenAI `tools` form."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


_SIMPLE_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def type_schema(annotation: Any) -> dict:
    """JSON schema for a type hint: str/int/float/bool, list[...], dict[...], Literal, Optional/unions."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if annotation in _SIMPLE_TYPES:
        return {"type": _SIMPLE_TYPES[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set):
        out: dict = {"type": "array"}
        if args and args[0] is not Ellipsis:
            out["items"] = type_schema(args[0])
        return out
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        options = [type_schema(a) for a in args if a is not type(None)]
        if len(options) == 1:
            return options[0]
        return {"anyOf": options}
    raise TypeError(
        f"type hint {annotation!r} has no JSON schema here; use str, int, float, bool, list, dict, "
        "Literal or a union of them"
    )


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: its line}) from a Google-style docstring (`Args:` then `name: text` lines)."""
    doc = inspect.cleandoc(doc or "")
    parts = re.split(r"^\s*(?:Args|Arguments|Parameters)\s*:\s*$", doc, maxsplit=1, flags=re.MULTILINE)
    description = parts[0].strip()
    params: dict[str, str] = {}
    if len(parts) == 2:
        current = None
        for line in parts[1].splitlines():
            if re.match(r"^\s*(Returns|Raises|Yields|Examples?)\s*:", line):
                break
            match = re.match(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if match:
                current = match.group(1)
                params[current] = match.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return description, params


def tool_from_function(
    fn: Callable[..., Any], name: str | None = None, approval: str = "always", timeout_s: float | None = None
) -> Tool:
    """Make a Tool from a typed, documented function; TypeError names what is missing."""
    name = name or fn.__name__
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise TypeError(f"tool name {name!r} must be 1-64 letters, digits, _ or -")
    if approval not in APPROVALS:
        raise TypeError(f"tool {name}: approval {approval!r} is not one of {', '.join(APPROVALS)}")
    description, param_docs = parse_docstring(fn.__doc__ or "")
    if not description:
        raise TypeError(f"tool {name}: the function needs a docstring saying what it does")
    hints = typing.get_type_hints(fn)
    properties, required = {}, []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname not in hints:
            raise TypeError(f"tool {name}: parameter {pname!r} needs a type hint")
        prop = type_schema(hints[pname])
        if pname in param_docs:
            prop["description"] = param_docs[pname]
        if param.default is inspect.Parameter.empty:
            required.append(pname)
        elif param.default is not None:
            prop["default"] = param.default
        properties[pname] = prop
    parameters = {"type": "object", "properties": properties, "required": required}
    return Tool(
        name=name, description=description, parameters=parameters, fn=fn, approval=approval, timeout_s=timeout_s
    )
