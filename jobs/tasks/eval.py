"""Job kind `eval`: `inkstone eval MODEL --tasks mmlu,arc_easy --shots 5 --mode ppl|gen [--circular] [--limit N]`.

Runs the benchmark tasks on our engine in this worker process, writes each finished task's metrics and samples
to the store (EvalRun / EvalResult / EvalSample), and answers through a SQLite response cache, so a retried job
(after cancel or kill -9) resumes where the last one stopped. `--output` writes lm-eval-style JSON for scripts.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from engine.eval.config import EvalConfig
from jobs.context import JobContext
from jobs.kinds import JobKind, register


def _write_json_atomic(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def _custom_dataset(root: Path, tasks: str) -> int | None:
    """A Dataset row for the first custom test set named in tasks (lineage), made on first use."""
    from engine.eval.tasks import expand, get_task, is_custom
    from jobs.tasks.finetune import dataset_row

    for _, name in expand(tasks):
        if is_custom(name):
            return dataset_row(root, name, Path(name).suffix.lstrip("."), len(get_task(name).docs("test")))
    return None


def _link_job(root: Path, job_id: int, model_id: int | None, dataset_id: int | None) -> None:
    from app.db import session
    from app.tables import Job

    with session(root) as s:
        job = s.get(Job, job_id)
        job.model_id, job.dataset_id = model_id, dataset_id
        s.add(job)


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


def _resolve(root: Path, ref: str) -> tuple[str, int | None, int | None]:
    """(path, Model id, Export id): a registered model or folder, an exported GGUF file, or a URL as is."""
    from sqlmodel import select

    from app.db import session
    from app.registry import is_gguf
    from app.tables import Export
    from jobs.tasks.finetune import resolve_base

    if is_url(ref):
        return ref, None, None
    if is_gguf(ref):
        path = str(Path(ref).expanduser().resolve())
        if not Path(path).is_file():
            raise ValueError(f"model: {ref} is not a file")
        with session(root) as s:
            export = s.exec(select(Export).where(Export.path == path)).first()
        return path, export.model_id if export else None, export.id if export else None
    path, model_id, _ = resolve_base(root, ref)
    return path, model_id, None


def run(args: EvalConfig, ctx: JobContext) -> dict:
    from app import evals
    from engine.eval.backends import EngineBackend
    from engine.eval.runner import Evaluator, results_json

    path, model_id, export_id = _resolve(ctx.root, args.model)
    dataset_id = _custom_dataset(ctx.root, args.tasks)
    _link_job(ctx.root, ctx.job_id, model_id, dataset_id)
    settings_hash = args.settings_hash()
    run_row = evals.start_run(ctx.root, model_ref=args.model, tasks=args.tasks, mode=args.mode,
                              settings={**args.settings(), "tasks": args.tasks}, settings_hash=settings_hash,
                              job_id=ctx.job_id, model_id=model_id, export_id=export_id, dataset_id=dataset_id)
    try:
        ctx.progress(0.0, f"loading {args.model}")
        if is_url(args.model):
            from engine.eval.openai_backend import OpenAIBackend

            backend = OpenAIBackend(args.model, api_key=os.environ.get("INKSTONE_EVAL_API_KEY", ""))
        elif args.workers > 1:  # data parallel: the questions split over engine processes
            from engine.eval.parallel import ParallelBackend

            backend = ParallelBackend(path, workers=args.workers, dtype=args.dtype, device=args.device)
        else:  # an HF folder runs on our runner; a GGUF through llama.cpp (generation mode)
            backend = EngineBackend(path, dtype=args.dtype, device=args.device)
        save = lambda r: evals.save_task(ctx.root, run_row.id, r.task, r.licence, r.metrics, r.samples, settings_hash)
        evaluator = Evaluator(args, backend, evals.SqliteResponseCache(ctx.root), ctx.progress, ctx.cancel)
        try:
            outcome = evaluator.run(on_task=save)
        finally:
            getattr(backend, "close", lambda: None)()
        for group, metrics in outcome["groups"].items():
            evals.save_task(ctx.root, run_row.id, group, outcome["tasks"][0].licence, metrics, [], settings_hash)
    except BaseException:
        evals.finish_run(ctx.root, run_row.id, "failed")
        raise
    evals.finish_run(ctx.root, run_row.id, "done")
    doc = results_json(outcome, args)
    if args.contamination:  # the clean-subset scores are stored beside the full ones
        from app.contamination import check_run

        doc["contamination"] = check_run(ctx.root, run_row.id, args.contamination, progress=ctx.progress)
    if args.output:
        _write_json_atomic(Path(args.output).expanduser(), doc)
    return {"eval_run": run_row.id, **doc}


KIND = register(JobKind("eval", "Evaluate", EvalConfig, "jobs.tasks.eval:run",
                        gpus=lambda args: 0 if args.device == "cpu" else 1))
