"""Job kind `data_prep` (`inkstone data run`): run a data recipe over files and register the output dataset.

The engine does the work (engine.data.runner); this module resolves names (a recipe preset or file, a model
name for the tokenizer), checks inputs before anything is queued, and records the Dataset row with its lineage:
the input paths, the resolved recipe and the job that made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class DataPrepArgs:
    input: str = ""
    """Input files or folders, separated by commas (jsonl, json, csv, tsv, parquet, txt, md, html, pdf, docx)."""
    recipe: str = "default"
    """A preset name (default, pretrain-zh-en, sft-clean) or a recipe JSON file."""
    output: str = ""
    """Output folder (default: datasets/NAME in the data dir)."""
    name: str = ""
    """Dataset name in the store (default: the output folder's name)."""
    text_field: str = "text"
    """Field holding the text in jsonl/json/csv/parquet inputs."""
    prompt_field: str = ""
    """Field holding the prompt, for the SFT messages format."""
    tokenizer: str = ""
    """Count tokens with this registered model (name or id) or tokenizer folder; adds a tokenize step."""
    workers: Annotated[int, Field(ge=0, le=256)] = 0
    """Worker processes (0: one per core)."""

    def paths(self) -> list[str]:
        return [p.strip() for p in self.input.split(",") if p.strip()]

    def validate(self) -> None:
        from engine.data.recipe import load_recipe

        if not self.paths():
            raise ValueError("input: give at least one file or folder")
        for p in self.paths():
            if not Path(p).expanduser().exists():
                raise ValueError(f"input: {p} does not exist")
        load_recipe(self.recipe)  # raises "recipe: …" naming the step and field
        if self.output and Path(self.output).expanduser().is_file():
            raise ValueError(f"output: {self.output} is a file; give a folder")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "dataset"


def _tokenizer_path(root: Path, ref: str) -> str:
    if Path(ref).expanduser().is_dir():
        return str(Path(ref).expanduser().resolve())
    from app.registry import resolve_model

    return resolve_model(root, ref).path


def _first_attempt(root: Path, job_id: int) -> int:
    """The job a chain of retries started from: every retry writes into its folder and so reuses its shards."""
    from app.db import session
    from app.tables import Job

    with session(root) as s:
        job = s.get(Job, job_id)
        while job.retry_of:
            job = s.get(Job, job.retry_of)
        return job.id


def _register(root: Path, name: str, output: Path, manifest: dict, inputs: list[str], job_id: int) -> int:
    from sqlmodel import select

    from app.db import session
    from app.tables import Dataset

    size = sum(Path(f["path"]).stat().st_size for f in manifest["files"].values())
    with session(root) as s:
        row = s.exec(select(Dataset).where(Dataset.path == str(output))).first()
        if row is None:  # a rerun into the same folder updates its row; a new folder needs a free name
            taken = set(s.exec(select(Dataset.name)).all())
            unique, n = name, 2
            while unique in taken:
                unique, n = f"{name}-{n}", n + 1
            row = Dataset(name=unique, path=str(output))
        row.format = f"{manifest['write_as']}:{manifest['format']}"
        row.rows, row.size_bytes = manifest["rows_written"], size
        row.recipe, row.inputs, row.job_id = manifest["recipe"], inputs, job_id
        s.add(row)
        s.flush()
        return row.id


def run(args: DataPrepArgs, ctx: JobContext) -> dict:
    from engine.data.readers import Columns
    from engine.data.recipe import RECORD_STEPS, Tokenize, load_recipe
    from engine.data.runner import RunOptions, run_recipe

    recipe = load_recipe(args.recipe)
    if args.tokenizer:  # last of the record steps, so it counts the tokens of the text that is kept
        at = max((i + 1 for i, (n, _) in enumerate(recipe.steps) if n in RECORD_STEPS), default=0)
        recipe.steps = [s for s in recipe.steps if s[0] != "tokenize"]
        tokenize = Tokenize(_tokenizer_path(ctx.root, args.tokenizer))
        recipe.steps.insert(min(at, len(recipe.steps)), ("tokenize", tokenize))
    first = _first_attempt(ctx.root, ctx.job_id)
    name = args.name or (Path(args.output).name if args.output else f"{_slug(recipe.name)}-job{first}")
    output = Path(args.output).expanduser() if args.output else ctx.root / "datasets" / _slug(name)
    output = output.resolve()
    inputs = [str(Path(p).expanduser().resolve()) for p in args.paths()]
    opts = RunOptions(inputs, output, Columns(args.text_field, args.prompt_field), workers=args.workers)
    manifest = run_recipe(recipe, opts, ctx.progress, ctx.cancel)
    dataset_id = _register(ctx.root, name, output, manifest, inputs, ctx.job_id)
    return {"dataset_id": dataset_id, "output": str(output), "records_in": manifest["records_in"],
            "records_out": manifest["records_out"], "seconds": manifest["seconds"]}


KIND = register(JobKind("data_prep", "Prepare data", DataPrepArgs, "jobs.tasks.data_prep:run", cli="data run"))
