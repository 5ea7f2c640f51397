"""Job kind `finetune`: SFT (LoRA, QLoRA, full) or continued pretraining of a registered model, resumable.

`inkstone finetune --model M --data FILE --method lora …`. The run writes checkpoints into the job's folder;
a retried job (after cancel, failure or kill -9) resumes from the newest checkpoint of the job it retries,
and `--resume-from JOB_ID --epochs N` trains a finished run N epochs in all. Full finetunes are registered as
models; adapters are registered merged when `--merge` is given (or later through the `merge_adapter` job).
Every produced model is linked to its base model, its dataset and this job.

Eval in the loop: with `--eval-tasks arc_easy,mmlu_anatomy`, the job queues an `eval` job for the base model as
it starts (it runs beside the training or right after it, as GPU slots allow) and one for the result when the
result exists, both with the same eval settings so their settings hashes match and the run page can put them
side by side. The result is the registered model (full finetune or `--merge`), or the base model with the adapter
that was not merged (`eval --adapter`, which merges it once into the data dir's cache). The eval job ids
are in the job's result under `evals` from the moment they are queued.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from engine.finetune.config import FinetuneConfig
from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class FinetuneJobArgs(FinetuneConfig):
    """The finetune's own arguments plus what the job does around the training: evaluate before and after."""

    eval_tasks: str = ""
    """Evaluate the base model and the result on these comma-separated eval tasks (empty: no evaluation)."""
    eval_limit: Annotated[int, Field(ge=0)] = 100
    """Questions per eval task in the before/after evaluations (0: all)."""
    eval_mode: Literal["ppl", "gen"] = "ppl"
    """Before/after evaluation mode: ppl (option log-likelihoods) or gen (generate, then extract the answer)."""

    def validate(self) -> None:
        super().validate()
        if self.eval_tasks:
            from engine.eval.config import EvalConfig

            try:  # the eval job's own checks, so a typo in a task name is refused before training starts
                EvalConfig(**eval_params(self, self.model)).validate()
            except ValueError as e:
                raise ValueError(f"eval_tasks: {str(e).removeprefix('tasks: ')}") from None

    def training_config(self) -> FinetuneConfig:
        """The plain engine config (the training processes rebuild it from its fields)."""
        return FinetuneConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(FinetuneConfig)})


def eval_params(args: FinetuneJobArgs, model: str, adapter: str = "") -> dict:
    """The `eval` job's arguments for one side: everything but the model is the same for base and result."""
    params = {"model": model, "tasks": args.eval_tasks, "limit": args.eval_limit, "mode": args.eval_mode,
              "device": args.device}
    return {**params, "adapter": adapter} if adapter else params


def resolve_base(root: Path, ref: str) -> tuple[str, int | None, str]:
    """(HF folder, registry id or None, display name) for a registered model or a folder path."""
    from app.registry import resolve_model

    if Path(ref).expanduser().is_dir():
        folder = Path(ref).expanduser().resolve()
        return str(folder), None, folder.name
    row = resolve_model(root, ref)
    return row.path, row.id, row.name


def find_resume_point(root: Path, job_id: int, resume_from: str) -> Path | None:
    """The run folder to resume from: an explicit one, else the newest checkpoint along the retry chain."""
    from engine.finetune.checkpoint import latest_checkpoint
    from jobs.api import get_job

    if resume_from:
        path = root / "jobs" / resume_from if resume_from.isdigit() else Path(resume_from).expanduser()
        if latest_checkpoint(path) is None:
            raise ValueError(f"resume_from: no checkpoint under {path}")
        return path
    job = get_job(root, job_id)
    while job.retry_of:
        previous = get_job(root, job.retry_of)
        folder = Path(previous.params.get("output") or root / "jobs" / str(previous.id))
        if latest_checkpoint(folder) is not None:
            return folder
        job = previous
    return None


def dataset_row(root: Path, data: str, fmt: str, rows: int) -> int:
    """The Dataset row for a training file (made on first use), for lineage."""
    from sqlmodel import select

    from app.db import session
    from app.tables import Dataset

    path = str(Path(data).expanduser().resolve())
    with session(root) as s:
        found = s.exec(select(Dataset).where(Dataset.path == path)).first()
        if found:
            return found.id
        name, n = Path(path).stem, 1
        while s.exec(select(Dataset).where(Dataset.name == name)).first():
            n += 1
            name = f"{Path(path).stem}-{n}"
        row = Dataset(name=name, path=path, format=fmt, rows=rows, size_bytes=Path(path).stat().st_size)
        s.add(row)
        s.flush()
        return row.id


def link_job(root: Path, job_id: int, model_id: int | None, dataset_id: int) -> None:
    from app.db import session
    from app.tables import Job

    with session(root) as s:
        job = s.get(Job, job_id)
        job.model_id, job.dataset_id = model_id, dataset_id
        s.add(job)


def record_evals(root: Path, job_id: int, evals: dict) -> None:
    """Put the eval job ids into the running job's result now, so the run page can follow them while it trains."""
    from app.db import session
    from app.tables import Job

    with session(root) as s:
        job = s.get(Job, job_id)
        job.result = {**(job.result or {}), "evals": evals}
        s.add(job)


def earlier_base_eval(root: Path, job_id: int) -> int | None:
    """The base model's eval job of an earlier try of this run (a retry), unless it failed or was stopped."""
    from jobs import status as st
    from jobs.api import get_job

    job = get_job(root, job_id)
    while job.retry_of:
        job = get_job(root, job.retry_of)
        base = (job.result or {}).get("evals", {}).get("base_job")
        if base and get_job(root, base).status not in (st.FAILED, st.CANCELLED, st.INTERRUPTED):
            return base
    return None


def submit_eval(root: Path, args: FinetuneJobArgs, job_id: int, side: str, model: str, adapter: str = "") -> int:
    from jobs.api import submit

    title = f"Evaluate the {side} of finetune #{job_id}"
    return submit(root, "eval", eval_params(args, model, adapter), title=title).id


def start_evals(args: FinetuneJobArgs, ctx: JobContext, base_name: str) -> dict:
    """Queue (or, on a retry, reuse) the base model's evaluation; {} when none was asked for."""
    if not args.eval_tasks:
        return {}
    from engine.eval.config import EvalConfig

    settings_hash = EvalConfig(**eval_params(args, args.model)).settings_hash()
    base_job = earlier_base_eval(ctx.root, ctx.job_id) or submit_eval(ctx.root, args, ctx.job_id, "base", args.model)
    evals = {"tasks": args.eval_tasks, "settings_hash": settings_hash, "base_model": base_name,
             "base_job": base_job, "result_job": None}
    record_evals(ctx.root, ctx.job_id, evals)
    ctx.progress(0.0, f"the base model is evaluated as job #{base_job}")
    return evals


def finish_evals(args: FinetuneJobArgs, ctx: JobContext, evals: dict, result_model: str, adapter: str = "") -> dict:
    """Queue the result's evaluation, with the same eval settings as the base's (an adapter is not a setting)."""
    if not evals:
        return {}
    label = f"{result_model} + {Path(adapter).name}" if adapter else result_model  # as the eval run names it
    evals = {**evals, "result_model": label,
             "result_job": submit_eval(ctx.root, args, ctx.job_id, "result", result_model, adapter)}
    record_evals(ctx.root, ctx.job_id, evals)
    ctx.progress(1.0, f"the result is evaluated as job #{evals['result_job']}")
    return evals


def run(args: FinetuneJobArgs, ctx: JobContext) -> dict:
    from app.registry import models_dir, register_folder
    from engine.finetune.data import load_examples
    from engine.models.merge import merge_adapter
    from engine.train.launch import launch

    base_path, base_id, base_name = resolve_base(ctx.root, args.model)
    fmt, examples = load_examples(args.data, args.data_format, args.column_map)
    dataset_id = dataset_row(ctx.root, args.data, fmt, len(examples))
    link_job(ctx.root, ctx.job_id, base_id, dataset_id)
    output = Path(args.output).expanduser() if args.output else ctx.work_dir
    resume = find_resume_point(ctx.root, ctx.job_id, args.resume_from)
    evals = start_evals(args, ctx, base_name)
    if resume is not None:
        ctx.progress(0.0, f"resuming from {resume}")
    env = {"TORCH_EXTENSIONS_DIR": str(ctx.root / "torch_extensions")}
    result = launch(args.training_config(), base_path, output, ctx.progress, ctx.cancel, resume, env=env)
    name = args.name or f"{base_name}-{args.method}-job{ctx.job_id}"
    lineage = dict(parent_model_id=base_id, dataset_id=dataset_id, job_id=ctx.job_id)
    if args.method == "full":
        model = register_folder(ctx.root, result["model_dir"], name=name, source="finetune", managed=True,
                                **lineage)
        result["registered"] = model.name
    elif args.merge:
        ctx.progress(1.0, "merging the adapter into the base model")
        folder = merge_adapter(base_path, result["adapter"], models_dir(ctx.root) / name)
        model = register_folder(ctx.root, folder, name=name, source="merge", managed=True, **lineage)
        result["registered"] = model.name
    if evals:
        if result.get("registered"):
            result["evals"] = finish_evals(args, ctx, evals, result["registered"])
        else:  # an adapter left unmerged: the eval job applies it to the base (merged once, in its cache)
            result["evals"] = finish_evals(args, ctx, evals, args.model, str(result["adapter"]))
    result["losses"] = result["losses"][-200:]  # the full curve is in the metric rows
    return result


def _gpus_needed(args: FinetuneJobArgs) -> int:
    """One GPU per process unless the run names its GPUs; with a hostfile, this node's share."""
    if args.device == "cpu":
        return 0
    return len([g for g in args.gpus.split(",") if g.strip()]) if args.gpus else args.num_procs


KIND = register(JobKind("finetune", "Finetune", FinetuneJobArgs, "jobs.tasks.finetune:run",
                        gpus=_gpus_needed))
