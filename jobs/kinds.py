"""The registry of job kinds: one name serves the job kind, the CLI subcommand and the preset folder.

A kind names an argument dataclass (the same one the CLI and UI build) and a run function
`run(args, ctx) -> dict` imported only inside the worker process, so listing kinds never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str  # shown in job lists
    args_cls: type  # a dataclass whose field docs feed CLI help and form labels
    run_path: str  # "module:function", imported in the worker only
    gpus: Callable[[Any], int] = lambda args: 0  # GPUs a job of these arguments needs (0: runs on the CPU)
    cli: str = ""  # CLI words when not the kind's name, e.g. "export gguf" for `inkstone export gguf …`

    def parse_args(self, params: dict) -> Any:
        """Validate params into the argument dataclass; ValueError names the field."""
        unknown = set(params) - {f.name for f in dataclasses.fields(self.args_cls)}
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s): {', '.join(sorted(unknown))}")
        try:
            args = TypeAdapter(self.args_cls).validate_python(params)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "params"
            raise ValueError(f"{self.name}: field {field!r}: {err['msg']}") from None
        if hasattr(args, "validate"):  # cross-field and file checks, before anything is queued
            args.validate()
        return args

    def load_run(self) -> Callable:
        module, func = self.run_path.split(":")
        return getattr(importlib.import_module(module), func)


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    _load_builtin_kinds()
    if name not in KINDS:
        raise ValueError(f"unknown job kind {name!r} (known: {', '.join(sorted(KINDS))})")
    return KINDS[name]


def _load_builtin_kinds() -> None:
    # Each module in jobs/tasks registers its kind on import; none imports torch at module level.
    import jobs.tasks

    for info in pkgutil.iter_modules(jobs.tasks.__path__):
        importlib.import_module(f"jobs.tasks.{info.name}")
