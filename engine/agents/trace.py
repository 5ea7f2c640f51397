"""The one record every agent loop writes: a run is a list of steps, each JSON-serializable.

Function calling, ReAct and plan-then-execute all describe what happened the same way, so the playground shows
one kind of step card, the store keeps one kind of trace, and any good run turns into the same finetuning
conversation (OpenAI messages with `tool_calls`) whichever loop produced it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

STEP_KINDS = ("plan", "tool", "answer", "error")
"""plan: a plan-then-execute plan; tool: one tool call and its observation; answer: the final answer;
error: a turn the loop could not use (unparsable reply, refused call) or the reason it stopped."""

STATUSES = ("running", "answered", "max_steps", "repeated_call", "timeout", "cancelled", "error")


@dataclass
class Step:
    """One thing the agent did: a tool call with its observation, a plan, a final answer, or a failed turn."""

    index: int
    """Position in the run, from 0."""
    kind: str
    """One of STEP_KINDS."""
    turn: int = 0
    """The model turn that produced it; parallel tool calls share a turn."""
    thought: str = ""
    """What the model said before acting (reasoning text, or the plan)."""
    tool: str = ""
    """The tool called, for kind == 'tool'."""
    arguments: Any = None
    """The call's arguments: a dict when they parsed, the raw text when they did not."""
    observation: str = ""
    """What the tool returned (or the answer text, for kind == 'answer')."""
    call_id: str = ""
    """The tool-call id the model or the loop gave the call."""
    duration_s: float = 0.0
    """Seconds spent: the tool's run time, or the model call's for answers and plans."""
    tokens: int = 0
    """Tokens the model spent on the turn that produced this step (prompt + completion), counted once a turn."""
    error: str = ""
    """Why the step failed, when it did (bad arguments, unknown tool, timeout, denied …)."""
    started_at: float = field(default_factory=time.time)
    """UTC epoch seconds."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trace:
    """A whole agent run: the question, every step, the answer and why it stopped."""

    question: str
    """The user's question."""
    loop: str
    """function_calling | react | plan_execute."""
    model: str = ""
    """The model's name as the client knows it."""
    tools: list[dict] = field(default_factory=list)
    """The tools offered, in OpenAI `tools` form."""
    system_prompt: str = ""
    """The system prompt the loop was given (not the loop's own protocol instructions)."""
    steps: list[Step] = field(default_factory=list)
    """Everything that happened, in order."""
    answer: str | None = None
    """The final answer; None when the run ended without one."""
    status: str = "running"
    """One of STATUSES."""
    message: str = ""
    """Why the run ended, in words (the repeated call, the timeout …)."""
    started_at: float = field(default_factory=time.time)
    """UTC epoch seconds."""
    finished_at: float | None = None
    """UTC epoch seconds; None while running."""

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.steps)

    def add(self, kind: str, **fields) -> Step:
        step = Step(index=len(self.steps), kind=kind, **fields)
        self.steps.append(step)
        return step

    def finish(self, status: str, message: str = "", answer: str | None = None) -> None:
        self.status, self.message, self.finished_at = status, message, time.time()
        if answer is not None:
            self.answer = answer

    def to_dict(self) -> dict:
        out = asdict(self)
        out["tokens"] = self.tokens
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> Trace:
        data = {k: v for k, v in data.items() if k != "tokens"}
        steps = [Step(**s) for s in data.pop("steps", [])]
        return cls(**data, steps=steps)

    def to_messages(self) -> list[dict]:
        """The run as an OpenAI conversation: each turn's tool calls as one assistant message with `tool_calls`,
        their observations as `tool` messages, then the answer. Failed turns are left out: a dataset built from
        traces teaches the calls that worked."""
        messages: list[dict] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.question})
        by_turn: dict[int, list[Step]] = {}
        for step in self.steps:
            if step.kind == "tool" and not step.error:
                by_turn.setdefault(step.turn, []).append(step)
        for turn in sorted(by_turn):
            calls = by_turn[turn]
            messages.append(
                {
                    "role": "assistant",
                    "content": calls[0].thought,
                    "tool_calls": [
                        {
                            "id": s.call_id or f"call_{s.index}",
                            "type": "function",
                            "function": {"name": s.tool, "arguments": _arguments_text(s.arguments)},
                        }
                        for s in calls
                    ],
                }
            )
            for s in calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": s.call_id or f"call_{s.index}",
                        "name": s.tool,
                        "content": s.observation,
                    }
                )
        if self.answer is not None:
            messages.append({"role": "assistant", "content": self.answer})
        return messages


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
