"""Job kind `contamination`: `inkstone contamination --run 12 --dataset my-sft-data [--n 13]`.

Checks an evaluation run that already exists against a training dataset (the eval job does the same at its end
when given `--contamination`): its samples are marked and the clean-subset scores stored beside the full ones.
Without a run, `--tasks mmlu,gsm8k` reports only which share of those benchmarks' items the dataset contains.
A scan of a large dataset takes a while, so it is a job, cancellable, with progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.eval.contamination import DEFAULT_N
from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class ContaminationConfig:
    dataset: str = ""
    """A registered dataset (name or id) or a data file or folder (.jsonl, .json, .parquet, .csv, .txt)."""
    run: int = 0
    """The evaluation run to check (its samples are marked, clean scores stored); 0: check `tasks` instead."""
    tasks: str = ""
    """Without a run: comma-separated benchmark tasks whose items are checked."""
    split: str = ""
    """Without a run: the tasks' split (default: each task's own)."""
    n: int = DEFAULT_N
    """Words in an n-gram; an item sharing one n-gram with the dataset counts as contaminated."""

    def validate(self) -> None:
        if not self.dataset.strip():
            raise ValueError("dataset: name a registered dataset or a data file")
        if self.n < 1:
            raise ValueError(f"n: must be >= 1, got {self.n}")
        if self.run < 0:
            raise ValueError(f"run: must be an evaluation run id, got {self.run}")
        if not self.run:
            if not self.tasks.strip():
                raise ValueError("tasks: name a run to check, or the tasks whose items to check")
            from engine.eval.tasks import expand

            expand(self.tasks)


def _link_dataset(ctx: JobContext, dataset_id: int | None) -> None:
    if dataset_id is None:
        return
    from app.db import session
    from app.tables import Job

    with session(ctx.root) as s:
        job = s.get(Job, ctx.job_id)
        job.dataset_id = dataset_id
        s.add(job)


def run(args: ContaminationConfig, ctx: JobContext) -> dict:
    from app.contamination import check_run, check_tasks, resolve_dataset

    _, _, dataset_id = resolve_dataset(ctx.root, args.dataset)
    _link_dataset(ctx, dataset_id)
    if args.run:
        return {"eval_run": args.run, **check_run(ctx.root, args.run, args.dataset, n=args.n, progress=ctx.progress,
                                                  cancel=ctx.cancel)}
    return check_tasks(args.tasks, args.dataset, n=args.n, split=args.split, progress=ctx.progress,
                       cancel=ctx.cancel, root=ctx.root)


KIND = register(JobKind("contamination", "Contamination check", ContaminationConfig,
                        "jobs.tasks.contamination:run"))
