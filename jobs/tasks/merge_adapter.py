"""Job kind `merge_adapter`: merge a finetune job's adapter into its base and register the merged model.

What the run page's "merge and register" and "chat with this checkpoint" buttons start; a checkpoint's
adapter can be merged too, so a run can be tried before it has finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class MergeAdapterArgs:
    job: Annotated[int, Field(ge=1)] = 1
    """The finetune job whose adapter to merge."""
    checkpoint: str = ""
    """A checkpoint folder of that job to merge instead of its final adapter (empty: the final one)."""
    name: str = ""
    """Name to register the merged model under (default: derived from the job)."""


def run(args: MergeAdapterArgs, ctx: JobContext) -> dict:
    from app.registry import models_dir, register_folder
    from engine.finetune.checkpoint import latest_checkpoint
    from engine.models.merge import merge_adapter
    from jobs.api import get_job
    from jobs.tasks.finetune import resolve_base

    job = get_job(ctx.root, args.job)
    if job.kind != "finetune" or job.params.get("method", "lora") == "full":
        raise ValueError(f"job: job {args.job} is not a LoRA/QLoRA finetune")
    run_dir = Path(job.params.get("output") or ctx.root / "jobs" / str(job.id))
    if args.checkpoint:
        adapter = Path(args.checkpoint) / "adapter"
    elif (run_dir / "adapter").is_dir():
        adapter = run_dir / "adapter"
    else:
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise ValueError(f"job: job {args.job} has no adapter or checkpoint yet")
        adapter = latest / "adapter"
    base_path, base_id, base_name = resolve_base(ctx.root, job.params.get("model", "smollm2-135m-instruct"))
    name = args.name or f"{base_name}-{job.params.get('method', 'lora')}-job{job.id}-merged"
    ctx.progress(0.1, f"merging {adapter}")
    folder = merge_adapter(base_path, adapter, models_dir(ctx.root) / name)
    model = register_folder(ctx.root, folder, name=name, source="merge", managed=True, parent_model_id=base_id,
                            dataset_id=job.dataset_id, job_id=job.id)
    ctx.progress(1.0, f"registered {model.name}")
    return {"registered": model.name, "path": str(folder), "adapter": str(adapter)}


KIND = register(JobKind("merge_adapter", "Merge adapter and register", MergeAdapterArgs,
                        "jobs.tasks.merge_adapter:run"))
