"""Read a training file and turn every row into one of two shapes: a conversation or a raw text.

Users bring alpaca (instruction/input/output), ShareGPT (conversations/from/value), OpenAI messages
(role/content, system, tool, assistant `tool_calls`, with the offered `tools` beside `messages` — what the agents
export writes) or raw text, as jsonl/json/csv/parquet. The format is detected from the columns,
a column mapping can override it, and every problem is reported with the file, the line and the field, before
anything is queued.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.records import DataError, read_records

FORMATS = ("auto", "alpaca", "sharegpt", "messages", "text")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
    "function_call": "assistant",
    "observation": "tool",
}
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Example:
    """One training row: either `messages` (a conversation) or `text` (continued pretraining)."""

    line: int
    """1-based line (jsonl/csv), record index (json/parquet) the row came from."""
    messages: list[dict] = field(default_factory=list)
    """OpenAI-style messages {role, content}."""
    text: str = ""
    """Raw text, for continued pretraining."""
    tools: list[dict] | None = None
    """OpenAI tool schemas ({type, function: {name, …}}) the conversation was offered, rendered with it."""


def detect_format(record: dict, mapping: dict | None = None) -> str:
    """The format a record's columns say it is in (after the column mapping)."""
    keys = set(_mapped(record, mapping or {}))
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    raise DataError(
        f"cannot tell the format from columns {sorted(record)}: expected messages, conversations, "
        "instruction+output or text (or give a column mapping)"
    )


def _mapped(record: dict, mapping: dict) -> dict:
    """Rename user columns to ours: mapping is {our_name: their_column}."""
    out = dict(record)
    for ours, theirs in mapping.items():
        if theirs in record:
            out[ours] = record[theirs]
    return out


def _text_field(record: dict, name: str, where: str, required: bool = True) -> str:
    value = record.get(name)
    if value is None or (isinstance(value, float) and value != value):  # csv/parquet gaps
        if required:
            raise DataError(f"{where}: field {name!r} is missing")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
    return value


def _json_field(record: dict, key: str, where: str):
    value = record.get(key)
    if isinstance(value, str):  # csv cells hold JSON
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: field {key!r} is not valid JSON") from None
    return value


def _tools(record: dict, where: str) -> list[dict] | None:
    tools = _json_field(record, "tools", where)
    if tools is None or tools == [] or (isinstance(tools, float) and tools != tools):
        return None
    if not isinstance(tools, list):
        raise DataError(f"{where}: field 'tools' must be a list of tool schemas")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DataError(f"{where}: field tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
    return tools


def _check_tool_calls(calls, where: str, field_name: str) -> None:
    if not isinstance(calls, list):
        raise DataError(f"{where}: field {field_name} must be a list of tool calls")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DataError(
                f"{where}: field {field_name}[{j}] must be {{'function': {{'name': ..., 'arguments': ...}}}}"
            )
        if not isinstance(function.get("arguments", {}), (str, dict)):
            raise DataError(f"{where}: field {field_name}[{j}].function.arguments must be a JSON string or object")


def _to_example(record: dict, fmt: str, where: str, line: int) -> Example:
    if fmt == "text":
        text = _text_field(record, "text", where)
        if not text.strip():
            raise DataError(f"{where}: field 'text' is empty")
        return Example(line, text=text)
    if fmt == "alpaca":
        prompt = _text_field(record, "instruction", where)
        extra = _text_field(record, "input", where, required=False)
        messages = []
        if record.get("system"):
            messages.append({"role": "system", "content": _text_field(record, "system", where)})
        messages.append({"role": "user", "content": f"{prompt}\n\n{extra}" if extra.strip() else prompt})
        messages.append({"role": "assistant", "content": _text_field(record, "output", where)})
        return Example(line, messages=messages)
    key = "messages" if fmt == "messages" else "conversations"
    turns = _json_field(record, key, where)
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: field {key!r} must be a non-empty list of turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: field {key}[{i}] must be an object")
        if fmt == "sharegpt":
            role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
            content = turn.get("value")
            if role is None:
                raise DataError(
                    f"{where}: field {key}[{i}].from is {turn.get('from')!r}; expected one of {sorted(SHAREGPT_ROLES)}"
                )
        else:
            role, content = turn.get("role"), turn.get("content")
            if role not in ROLES:
                raise DataError(f"{where}: field {key}[{i}].role is {role!r}; expected one of {list(ROLES)}")
        if content is None and role == "assistant" and turn.get("tool_calls"):
            content = ""
        if not isinstance(content, str):
            raise DataError(f"{where}: field {key}[{i}].content must be text")
        message = {"role": role, "content": content}
        if turn.get("tool_calls") is not None:
            _check_tool_calls(turn["tool_calls"], where, f"{key}[{i}].tool_calls")
        for extra_key in ("tool_calls", "name", "tool_call_id"):
            if turn.get(extra_key) is not None:
                message[extra_key] = turn[extra_key]
        messages.append(message)
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: field {key!r} has no assistant turn to learn from")
    return Example(line, messages=messages, tools=_tools(record, where))


def load_examples(
    path: str | Path, fmt: str = "auto", mapping: dict | None = None, limit: int | None = None
) -> tuple[str, list[Example]]:
    """(detected format, examples); raises DataError naming file, line and field on the first bad row."""
    if fmt not in FORMATS:
        raise DataError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    records = read_records(path)
    if not records:
        raise DataError(f"{path}: no rows")
    mapping = mapping or {}
    if fmt == "auto":
        line, first = records[0]
        try:
            fmt = detect_format(first, mapping)
        except DataError as e:
            raise DataError(f"{path}: line {line}: {e}") from None
    examples = []
    for line, record in records[:limit] if limit else records:
        examples.append(_to_example(_mapped(record, mapping), fmt, f"{path}: line {line}", line))
    return fmt, examples
