"""The registry of job kinds: one name serves the job kind, the CLI subcommand and the preset folder.

A kind names an argument dataclass (the same one the CLI and UI build) and a run function
`run(args, ctx) -> dict` imported only inside the worker process, so listing kinds never imports torch.
A preset is saved arguments of a kind, `assets/<kind>/NAME.json`; given arguments override its values.
A field marked SET_BY_JOB (an inherited one the task fills in itself) is no argument a user may give.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

PRESETS_DIR = Path(__file__).resolve().parents[1] / "assets"
SET_BY_JOB = {"set_by_job": True}  # dataclass field metadata: the task sets this field, a user does not


def user_fields(args_cls: type) -> list[dataclasses.Field]:
    """The fields of an argument dataclass that a user may set (CLI flags, form inputs, presets)."""
    return [f for f in dataclasses.fields(args_cls) if not f.metadata.get("set_by_job")]


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str  # shown in job lists
    args_cls: type  # a dataclass whose field docs feed CLI help and form labels
    run_path: str  # "module:function", imported in the worker only
    gpus: Callable[[Any], int] = lambda args: 0  # GPUs a job of these arguments needs (0: runs on the CPU)
    cli: str = ""  # CLI words when not the kind's name, e.g. "export gguf" for `inkstone export gguf …`

    def parse_args(self, params: dict, *, check: bool = True) -> Any:
        """Validate params into the argument dataclass; ValueError names the field.

        check=False skips the kind's own `validate()` (files on disk, the environment): a preset is checked
        for its fields and types only, since it names no input of its own.
        """
        unknown = set(params) - {f.name for f in user_fields(self.args_cls)}
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s): {', '.join(sorted(unknown))}")
        try:
            args = TypeAdapter(self.args_cls).validate_python(params)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "params"
            raise ValueError(f"{self.name}: field {field!r}: {err['msg']}") from None
        if check and hasattr(args, "validate"):  # cross-field and file checks, before anything is queued
            args.validate()
        return args

    def presets(self) -> list[str]:
        """Names of this kind's presets (assets/<kind>/*.json)."""
        return sorted(p.stem for p in (PRESETS_DIR / self.name).glob("*.json"))

    def preset(self, name: str) -> dict:
        """A preset's saved arguments; ValueError names the file and line, or lists the presets there are."""
        path = PRESETS_DIR / self.name / f"{name}.json"
        if not path.is_file():
            known = ", ".join(self.presets()) or "none"
            raise ValueError(f"{self.name}: no preset {name!r} (presets: {known})")
        try:
            params = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: {e.msg}") from None
        if not isinstance(params, dict):
            raise ValueError(f"{path}: a preset is a JSON object of arguments")
        return params

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
    # Each module in jobs/tasks registers its kind on import; none imports torch at module level. The
    # modules are found by their files, so this registry does not import the tasks that import it.
    for info in pkgutil.iter_modules([str(Path(__file__).resolve().parent / "tasks")]):
        importlib.import_module(f"jobs.tasks.{info.name}")
