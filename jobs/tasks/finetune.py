"""Job kind `finetune`: SFT (LoRA, QLoRA, full) or continued pretraining of a registered model, resumable.

`inkstone finetune --model M --data FILE --method lora …`. The run writes checkpoints into the job's folder;
a retried job (after cancel, failure or kill -9) resumes from the newest checkpoint of the job it retries,
and `--resume-from JOB_ID --epochs N` trains a finished run N epochs in all. Full finetunes are registered as
models; adapters are registered merged when `--merge` is given (or later through the `merge_adapter` job).
Every produced model is linked to its base model, its dataset and this job.
"""

from __future__ import annotations

from pathlib import Path

from engine.finetune.config import FinetuneConfig
from jobs.context import JobContext
from jobs.kinds import JobKind, register


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


def run(args: FinetuneConfig, ctx: JobContext) -> dict:
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
    if resume is not None:
        ctx.progress(0.0, f"resuming from {resume}")
    env = {"TORCH_EXTENSIONS_DIR": str(ctx.root / "torch_extensions")}
    result = launch(args, base_path, output, ctx.progress, ctx.cancel, resume, env=env)
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
    result["losses"] = result["losses"][-200:]  # the full curve is in the metric rows
    return result


def _gpus_needed(args: FinetuneConfig) -> int:
    """One GPU per process unless the run names its GPUs; with a hostfile, this node's share."""
    if args.device == "cpu":
        return 0
    return len([g for g in args.gpus.split(",") if g.strip()]) if args.gpus else args.num_procs


KIND = register(JobKind("finetune", "Finetune", FinetuneConfig, "jobs.tasks.finetune:run",
                        gpus=_gpus_needed))
