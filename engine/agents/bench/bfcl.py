"""BFCL v4 (Berkeley Function Calling Leaderboard) AST-match categories, on any ModelClient.

The data comes from the `bfcl-eval` wheel (Apache-2.0), installed `--no-deps` and read as files: each item is a
question, the functions offered and, in `possible_answer/`, every acceptable value of every argument. A reply
is right when its calls match the ground truth one to one (any order for parallel calls): same function, every
required argument present, no argument the function does not have, and each value among the accepted ones
(strings compared without case, spaces and punctuation, as BFCL's checker does; an int where a float is
expected is accepted). `irrelevance` is right when the model calls nothing. BFCL's schemas use Python type
names (dict, float, tuple, any) and dotted function names, which OpenAI-style tools do not accept, so both are
converted on the way in and the names mapped back on the way out, as BFCL's own OpenAI handler does.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.agents.model import ModelClient, ModelError, parse_arguments
from engine.agents.toolbox import Cancelled

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
LICENCE = "Apache-2.0 (bfcl-eval, Berkeley Function Calling Leaderboard)"
_TYPES = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
    "number": "number",
}


def data_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the bfcl-eval wheel is not installed: pip install --no-deps bfcl-eval")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Item:
    id: str
    messages: list[dict]
    functions: list[dict]
    answers: list[dict] = field(default_factory=list)
    """[{function name: {argument: [accepted values]}}]; empty for irrelevance."""


def load(category: str, limit: int | None = None, root: Path | None = None) -> list[Item]:
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} is not one of {', '.join(CATEGORIES)}")
    root = root or data_dir()
    questions = _read_jsonl(root / f"BFCL_v4_{category}.json")[:limit]
    answers = {}
    answer_file = root / "possible_answer" / f"BFCL_v4_{category}.json"
    if answer_file.exists():
        answers = {a["id"]: a["ground_truth"] for a in _read_jsonl(answer_file)}
    return [Item(q["id"], q["question"][0], q["function"], answers.get(q["id"], [])) for q in questions]


def openai_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _schema(node):
    if isinstance(node, dict):
        out = {k: _schema(v) for k, v in node.items()}
        if "type" in out:
            if out["type"] == "any":
                del out["type"]
            else:
                out["type"] = _TYPES.get(out["type"], out["type"])
        return out
    if isinstance(node, list):
        return [_schema(v) for v in node]
    return node


def tools_for(item: Item) -> list[dict]:
    return [
        {
            "type": "function",
            "function": {
                "name": openai_name(f["name"]),
                "description": f.get("description", ""),
                "parameters": _schema(f["parameters"]),
            },
        }
        for f in item.functions
    ]


def _norm(value):
    if isinstance(value, str):
        return re.sub(r"[ ,./\-_*^]", "", value).lower()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def call_matches(name: str, arguments: dict, expected: dict) -> bool:
    """One call against one ground-truth entry {function: {argument: [accepted values]}}."""
    ((fn, accepted),) = expected.items()
    if name != fn or not set(arguments) <= set(accepted):
        return False
    for argument, options in accepted.items():
        if argument not in arguments:
            if "" not in options:
                return False
            continue
        if _norm(arguments[argument]) not in [_norm(o) for o in options if o != ""]:
            return False
    return True


def calls_match(calls: list[tuple[str, dict]], expected: list[dict]) -> bool:
    """Every call matched to a different ground-truth entry, in any order (small sets: try all pairings)."""
    if len(calls) != len(expected):
        return False
    if not calls:
        return True
    name, arguments = calls[0]
    return any(
        call_matches(name, arguments, entry) and calls_match(calls[1:], expected[:i] + expected[i + 1 :])
        for i, entry in enumerate(expected)
    )


@dataclass
class Result:
    category: str
    total: int = 0
    correct: int = 0
    failures: list[dict] = field(default_factory=list)
    """Per wrong item: id, what the model called or said, and why it was wrong."""
    outcomes: list[dict] = field(default_factory=list)
    """Per item, in order: id, calls [(name, arguments)], content (the reply's text), correct, why."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def run_item(client: ModelClient, item: Item, category: str, max_tokens: int = 256) -> dict:
    """Ask one item once (tool_choice auto, greedy) and score its calls: {id, calls, content, correct, why}."""
    names = {openai_name(f["name"]): f["name"] for f in item.functions}
    content = ""
    try:
        reply = client.chat(item.messages, tools=tools_for(item), max_tokens=max_tokens, temperature=0.0)
        content = reply.content
        calls = [(names.get(c.name, c.name), parse_arguments(c.arguments)) for c in reply.tool_calls]
        ok = (not calls) if category == "irrelevance" else calls_match(calls, item.answers)
        why = "" if ok else ("called a tool" if category == "irrelevance" else "calls do not match")
    except (ModelError, ValueError) as exc:
        calls, ok, why = [], False, str(exc)
    return {"id": item.id, "calls": calls, "content": content, "correct": ok, "why": why}


def evaluate(
    client: ModelClient,
    category: str,
    limit: int | None = None,
    max_tokens: int = 256,
    progress=None,
    items: list[Item] | None = None,
    cancel: threading.Event | None = None,
) -> Result:
    """Ask each item once (tool_choice auto, greedy) and score its calls; `items` defaults to the category's."""
    result = Result(category)
    items = load(category, limit) if items is None else items
    for n, item in enumerate(items, 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        outcome = run_item(client, item, category, max_tokens)
        result.total += 1
        result.correct += outcome["correct"]
        result.outcomes.append(outcome)
        if not outcome["correct"]:
            result.failures.append({"id": item.id, "calls": outcome["calls"], "why": outcome["why"]})
        if progress is not None:
            progress(n / len(items), f"{category}: {result.correct}/{result.total}")
    return result
