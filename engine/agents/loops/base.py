"""What every agent loop shares: limits, cancel, repeated-call detection, streaming steps, one trace.

A loop subclass only decides what to ask the model and how to read its reply; the rules that keep a run
bounded live here once: at most `max_steps` model turns, a per-tool and a total time limit, a cancel flag
checked while the model or a tool runs, and the same call with the same arguments ending the run (a small
model that repeats itself would otherwise spin until the step limit). Steps stream out as they happen — as an
iterator (`stream`) or through a callback (`run`) — and the trace is complete whichever way the run ends.
"""

from __future__ import annotations

import abc
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.agents.model import ModelClient, ModelError, Reply, parse_arguments
from engine.agents.toolbox import Cancelled, Toolbox, run_with_limit
from engine.agents.trace import Step, Trace


@dataclass
class AgentConfig:
    max_steps: int = 8
    """Most model turns in one run (a plan-then-execute run: most plan entries it carries out)."""
    tool_timeout_s: float = 60.0
    """Seconds one tool call may take before it is abandoned with an error observation."""
    total_timeout_s: float = 600.0
    """Seconds the whole run may take, model calls included."""
    max_tokens: int = 512
    """Most tokens the model may write in one turn."""
    temperature: float = 0.0
    """Sampling temperature of every model turn (0: greedy)."""
    system_prompt: str = ""
    """Extra instructions placed before the loop's own."""
    language: str = "en"
    """Language of the text protocols' instructions: en or zh."""
    tool_choice: Any = None
    """Function calling: tool_choice for the first turn ('required', or {'type': 'function', 'function':
    {'name': ...}}); later turns are 'auto' so the model can answer."""

    def validate(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps: must be >= 1, got {self.max_steps}")
        for name in ("tool_timeout_s", "total_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.language not in ("en", "zh"):
            raise ValueError(f"language: must be 'en' or 'zh', got {self.language!r}")


class Stop(Exception):
    """Ends a run early with a status and a message (max steps, a repeated call, a timeout)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def call_key(tool: str, arguments: Any) -> str:
    """The same tool with the same arguments (however the JSON was spaced or ordered) gives the same key."""
    if isinstance(arguments, str):
        try:
            arguments = parse_arguments(arguments)
        except ValueError:
            return f"{tool}\x00{arguments}"
    return f"{tool}\x00{json.dumps(arguments, sort_keys=True, ensure_ascii=False)}"


class AgentLoop(abc.ABC):
    """Subclasses set `kind` and write `_steps`, a generator of steps that uses `ask` and `act`."""

    kind = ""

    def __init__(self, client: ModelClient, toolbox: Toolbox, config: AgentConfig | None = None):
        self.client = client
        self.toolbox = toolbox
        self.config = config or AgentConfig()
        self.config.validate()
        self.trace: Trace | None = None

    # The public faces -------------------------------------------------------------------------------------

    def stream(self, question: str, cancel: threading.Event | None = None) -> Iterator[Step]:
        """Yield every step as it happens; afterwards `self.trace` holds the whole, finished run."""
        self.trace = trace = Trace(
            question=question,
            loop=self.kind,
            model=getattr(self.client, "name", ""),
            tools=self.toolbox.schemas(),
            system_prompt=self.config.system_prompt,
        )
        self._cancel = cancel
        self._deadline = time.monotonic() + self.config.total_timeout_s
        self._turn = 0
        self._seen: dict[str, int] = {}
        try:
            yield from self._steps(question)
            if trace.status == "running":
                trace.finish("error", "the loop ended without an answer")
        except Stop as stop:
            yield trace.add("error", turn=self._turn, error=stop.message)
            trace.finish(stop.status, stop.message)
        except Cancelled:
            yield trace.add("error", turn=self._turn, error="cancelled by the user")
            trace.finish("cancelled", "cancelled by the user")
        except ModelError as exc:
            yield trace.add("error", turn=self._turn, error=str(exc))
            trace.finish("error", str(exc))

    def run(
        self, question: str, on_step: Callable[[Step], None] | None = None, cancel: threading.Event | None = None
    ) -> Trace:
        """Run to the end, handing each step to on_step as it happens; returns the trace."""
        for step in self.stream(question, cancel):
            if on_step is not None:
                on_step(step)
        assert self.trace is not None
        return self.trace

    # What loops build on ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def _steps(self, question: str) -> Iterator[Step]:
        """The loop itself: yield each step as it is recorded; end by recording an answer (or raise Stop)."""

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise Stop("timeout", f"the run took longer than total_timeout_s={self.config.total_timeout_s:g} s")
        return left

    def ask(self, messages: list[dict], count_turn: bool = True, **options) -> tuple[Reply, float]:
        """One model turn within the limits: (reply, seconds it took)."""
        if count_turn:
            if self._turn >= self.config.max_steps:
                raise Stop("max_steps", f"no answer after max_steps={self.config.max_steps} model turns")
            self._turn += 1
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled("cancelled")
        limit = self._remaining()
        options.setdefault("max_tokens", self.config.max_tokens)
        options.setdefault("temperature", self.config.temperature)
        started = time.monotonic()
        try:
            reply = run_with_limit(lambda: self.client.chat(messages, timeout=limit, **options), limit, self._cancel)
        except TimeoutError:
            raise Stop("timeout", f"the model did not answer within the run's remaining {limit:.0f} s") from None
        return reply, time.monotonic() - started

    def act(self, tool: str, arguments: dict | str, thought: str = "", call_id: str = "", tokens: int = 0) -> Step:
        """Run one call and record it as a step; a repeat of an earlier call ends the run instead."""
        key = call_key(tool, arguments)
        if key in self._seen:
            raise Stop(
                "repeated_call",
                f"the model called {tool} again with the same arguments as in step "
                f"{self._seen[key]}; stopping instead of repeating it",
            )
        assert self.trace is not None
        self._seen[key] = len(self.trace.steps)
        timeout = min(self.config.tool_timeout_s, self._remaining())
        outcome = self.toolbox.call(tool, arguments, timeout_s=timeout, cancel=self._cancel)
        return self.trace.add(
            "tool",
            turn=self._turn,
            thought=thought,
            tool=tool,
            arguments=outcome.arguments,
            observation=outcome.observation,
            call_id=call_id,
            duration_s=outcome.duration_s,
            tokens=tokens,
            error=outcome.error,
        )

    def answer(self, text: str, thought: str = "", duration_s: float = 0.0, tokens: int = 0) -> Step:
        assert self.trace is not None
        step = self.trace.add(
            "answer", turn=self._turn, thought=thought, observation=text, duration_s=duration_s, tokens=tokens
        )
        self.trace.finish("answered", answer=text)
        return step

    def failed_turn(self, error: str, thought: str = "", duration_s: float = 0.0, tokens: int = 0) -> Step:
        """A model turn the loop could not use; the run goes on and the model reads `error` next."""
        assert self.trace is not None
        return self.trace.add(
            "error", turn=self._turn, thought=thought, error=error, duration_s=duration_s, tokens=tokens
        )
