"""The built-in benchmarks, one module each (nanochat style), and lookup by lm-evaluation-harness name.

A task name may also be a path to a user's CSV/JSONL file (a custom set). `mmlu` is a group: it expands to its
57 `mmlu_<subject>` tasks and its score is their item-weighted mean, as lm-eval's group is. Agent benchmarks
(bfcl_*, gsm8k_tool, tooltalk_easy) are tasks too: they run their own tool-calling loop on the backend.
"""

from __future__ import annotations

from pathlib import Path

from engine.eval.task import Task
from engine.eval.tasks import agent, arc, code, gsm8k, hellaswag, math500, mmlu, piqa, winogrande

_BUILTIN: dict[str, Task] = {}
for _module in (mmlu, arc, hellaswag, winogrande, piqa, gsm8k, math500, code, agent):
    for _task in _module.TASKS:
        _BUILTIN[_task.name] = _task

GROUPS = {"mmlu": [name for name in _BUILTIN if name.startswith("mmlu_")]}


def is_custom(name: str) -> bool:
    return Path(name).suffix.lower() in (".csv", ".jsonl", ".json")


def get_task(name: str) -> Task:
    if is_custom(name):
        from engine.eval.tasks.custom import load_custom_task

        return load_custom_task(name)
    if name not in _BUILTIN:
        known = ", ".join(sorted(n for n in _BUILTIN if not n.startswith("mmlu_")))
        raise ValueError(f"tasks: unknown task {name!r} (built in: mmlu, mmlu_<subject>, {known}; "
                         "or a path to a .csv/.jsonl file)")
    return _BUILTIN[name]


def expand(names: str | list[str]) -> list[tuple[str, str]]:
    """(group, task name) pairs for a comma-separated list; a plain task is its own group."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError("tasks: name at least one task")
    pairs = []
    for name in names:
        members = GROUPS.get(name, [name])
        for member in members:
            get_task(member)
            pairs.append((name, member))
    return pairs


def builtin_tasks() -> list[Task]:
    return list(_BUILTIN.values())
