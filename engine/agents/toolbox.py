"""The tools of one conversation, and the one place a tool call is checked, approved, run and timed.

Every loop hands its calls here, so the rules hold whichever loop runs: an unknown tool, arguments that are not
JSON or do not fit the schema, a refused or denied call, a tool that raises or hangs — each becomes a clear
observation the model can read, never an exception that kills the run. A tool runs in a daemon thread so a hung
one can be abandoned at its time limit (tools that hold real resources, like the sandbox, enforce their own
limits too) and a cancel is noticed while it runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from engine.agents.model import parse_arguments
from engine.agents.tools.base import APPROVALS, Tool, ToolError

MAX_OBSERVATION_CHARS = 8000

Approver = Callable[[str, dict], str]
"""Asked before an 'ask' tool runs, with the tool's name and the exact arguments; returns 'once', 'session' or
'deny'."""

DECISIONS = ("once", "session", "deny")


@dataclass
class CallOutcome:
    """What came of one call."""

    arguments: Any
    """The parsed arguments (a dict), or the raw text when they did not parse."""
    observation: str
    """What the model reads next."""
    error: str = ""
    """Set when the call failed; the observation then says the same to the model."""
    duration_s: float = 0.0
    """Seconds the tool ran."""


class Cancelled(Exception):
    """The run's cancel flag was set while a tool or the model was running."""


def run_with_limit(fn: Callable[[], Any], timeout_s: float | None, cancel: threading.Event | None) -> Any:
    """fn() in a daemon thread; TimeoutError after timeout_s, Cancelled when cancel is set, else its result."""
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="agent-call")
    thread.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while thread.is_alive():
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError
        thread.join(0.05)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def observation_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_OBSERVATION_CHARS:
        text = text[:MAX_OBSERVATION_CHARS] + f"\n[… {len(text) - MAX_OBSERVATION_CHARS} more characters cut]"
    return text


class Toolbox:
    """The tools offered in one conversation, with their approval policies and the session's approvals."""

    def __init__(self, tools: list[Tool], policies: dict[str, str] | None = None, approver: Approver | None = None):
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self.tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self.tools[tool.name] = tool
        self.policies = {name: tool.approval for name, tool in self.tools.items()}
        for name, policy in (policies or {}).items():
            if name not in self.tools:
                raise ValueError(f"approval policy for {name!r}, which is not one of the tools {sorted(self.tools)}")
            if policy not in APPROVALS:
                raise ValueError(f"approval policy for {name!r} is {policy!r}; expected one of {APPROVALS}")
            self.policies[name] = policy
        self.approver = approver
        self.approved_for_session: set[str] = set()

    def schemas(self) -> list[dict]:
        return [tool.schema() for tool in self.tools.values() if self.policies[tool.name] != "never"]

    def describe(self) -> str:
        """One line a tool, for text protocols: name, description, argument schema."""
        return "\n".join(
            f"- {t['function']['name']}: {t['function']['description']} Arguments (JSON): "
            f"{json.dumps(t['function']['parameters'], ensure_ascii=False)}"
            for t in self.schemas()
        )

    def coerce(self, name: str, raw: str) -> dict | str:
        """Arguments written as text (ReAct, plans): a JSON object, or plain text for a tool with one parameter."""
        try:
            return parse_arguments(raw)
        except ValueError:
            tool = self.tools.get(name)
            props = tool.parameters.get("properties", {}) if tool else {}
            required = tool.parameters.get("required", []) if tool else []
            single = required if len(required) == 1 else list(props) if len(props) == 1 else []
            if len(single) == 1:
                text = raw.strip()
                if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
                    text = text[1:-1]
                return {single[0]: text}
            return raw

    def call(
        self, name: str, arguments: dict | str, timeout_s: float | None = None, cancel: threading.Event | None = None
    ) -> CallOutcome:
        """Check, approve and run one call. Raises only Cancelled."""
        if isinstance(arguments, str):
            try:
                arguments = parse_arguments(arguments)
            except ValueError as exc:
                return self._failed(arguments, f"the arguments for {name} are {exc}; send a JSON object")
        tool = self.tools.get(name)
        if tool is None or self.policies[name] == "never":
            offered = ", ".join(t["function"]["name"] for t in self.schemas()) or "none"
            why = "is not allowed" if tool else "does not exist"
            return self._failed(arguments, f"tool {name!r} {why}; the tools are: {offered}")
        try:
            jsonschema.validate(arguments, tool.parameters)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "arguments"
            return self._failed(arguments, f"the arguments for {name} do not fit its schema at {where}: {exc.message}")
        refusal = self._approve(name, arguments)
        if refusal:
            return self._failed(arguments, refusal)
        limit = tool.timeout_s if tool.timeout_s is not None else timeout_s
        started = time.monotonic()
        try:
            value = run_with_limit(lambda: tool.fn(**arguments), limit, cancel)
        except TimeoutError:
            return self._failed(
                arguments,
                f"tool {name} did not finish within {limit:g} s and was abandoned",
                time.monotonic() - started,
            )
        except ToolError as exc:
            return self._failed(arguments, f"{name}: {exc}", time.monotonic() - started)
        except Cancelled:
            raise
        except Exception as exc:
            return self._failed(
                arguments, f"tool {name} failed: {type(exc).__name__}: {exc}", time.monotonic() - started
            )
        return CallOutcome(arguments, observation_text(value), duration_s=time.monotonic() - started)

    def _approve(self, name: str, arguments: dict) -> str:
        """'' when the call may run, else the reason it may not."""
        if self.policies[name] != "ask" or name in self.approved_for_session:
            return ""
        if self.approver is None:
            return f"tool {name} needs the user's approval and no one is there to give it; the call was not run"
        decision = self.approver(name, arguments)
        if decision not in DECISIONS:
            return f"the approval for {name} came back as {decision!r}, not one of {DECISIONS}; the call was not run"
        if decision == "deny":
            return f"the user denied this call to {name}"
        if decision == "session":
            self.approved_for_session.add(name)
        return ""

    @staticmethod
    def _failed(arguments: Any, error: str, duration_s: float = 0.0) -> CallOutcome:
        return CallOutcome(arguments, f"Error: {error}", error=error, duration_s=duration_s)

    def close(self) -> None:
        for tool in self.tools.values():
            if tool.close is not None:
                tool.close()
