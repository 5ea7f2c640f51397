"""Job kind `eval`: `inkstone eval MODEL --tasks mmlu,arc_easy --shots 5 --mode ppl|gen [--circular] [--limit N]
[--judge MODEL|URL [--against MODEL2]]`.

Runs the benchmark tasks on our engine in this worker process, writes each finished task's metrics and samples
to the store (EvalRun / EvalResult / EvalSample), and answers through a SQLite response cache, so a retried job
(after cancel or kill -9) resumes where the last one stopped. With a judge, each task's answers are stored before
judging starts (engine.eval.judged_run), so a judge that cannot be reached fails the job but keeps them.
`--output` writes lm-eval-style JSON for scripts.
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


JUDGE_KEY_ENV = "INKSTONE_JUDGE_API_KEY"
"""An API key for a judge URL alone; else INKSTONE_EVAL_API_KEY serves every URL of the run."""


def with_adapter(root: Path, base: str, adapter: str, progress=None) -> str:
    """The base model with a LoRA adapter merged in: made once under the data dir, reused by later evaluations."""
    import hashlib

    from engine.eval.backends import folder_identity
    from engine.models.merge import check_adapter, merge_adapter

    if is_url(base) or not Path(base).is_dir():
        raise ValueError("adapter: applies to an HF model (registered, or a folder), not to a GGUF file or a URL")
    folder = Path(adapter).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"adapter: {adapter} is not a folder")
    check_adapter(folder)
    # Same base and adapter files (paths, sizes, times) -> the same merged folder.
    key = hashlib.sha256((folder_identity(base, "") + folder_identity(folder, "")).encode()).hexdigest()[:16]
    merged = root / "cache" / "merged-adapters" / f"{Path(base).name}+{folder.name}-{key}"
    if not (merged / "config.json").is_file():
        merged.parent.mkdir(parents=True, exist_ok=True)
        merge_adapter(base, folder, merged, progress or (lambda *a, **k: None))  # written aside, then renamed
    return str(merged)


def _backend_opener(root: Path, args: EvalConfig, progress=None):
    """(reference, role) -> backend for the model, the model compared against and the judge, each on demand."""

    def open_backend(ref: str, role: str):
        from engine.eval.backends import EngineBackend

        path, _, _ = _resolve(root, ref)
        if args.adapter and role == "model":
            path = with_adapter(root, path, args.adapter, progress)
        if is_url(ref):
            from engine.eval.openai_backend import OpenAIBackend

            key = os.environ.get(JUDGE_KEY_ENV, "") if role == "judge" else ""
            return OpenAIBackend(ref, api_key=key or os.environ.get("INKSTONE_EVAL_API_KEY", ""),
                                 max_retries=1 if role == "judge" else 2)
        if args.workers > 1 and role != "judge":  # data parallel: the questions split over engine processes
            from engine.eval.parallel import ParallelBackend

            return ParallelBackend(path, workers=args.workers, dtype=args.dtype, device=args.device)
        return EngineBackend(path, dtype=args.dtype, device=args.device)  # HF folder, or a GGUF via llama.cpp

    return open_backend


def _record_judge(root: Path, run_id: int, record: dict) -> None:
    """The judge's identity and exact prompts into the run's settings, as soon as the judge is loaded."""
    from app.db import session
    from app.tables import EvalRun

    with session(root) as s:
        run = s.get(EvalRun, run_id)
        run.settings = {**run.settings, "judge_protocol": record}
        s.add(run)


def run(args: EvalConfig, ctx: JobContext) -> dict:
    from app import evals
    from engine.eval.judge import protocol
    from engine.eval.judged_run import evaluate
    from engine.eval.runner import results_json

    _, model_id, export_id = _resolve(ctx.root, args.model)
    for field_name in ("judge", "against"):  # a misspelt judge fails now, not after the model's whole run
        if getattr(args, field_name):
            try:
                _resolve(ctx.root, getattr(args, field_name))
            except Exception as e:
                raise ValueError(f"{field_name}: {e}") from e
    dataset_id = _custom_dataset(ctx.root, args.tasks)
    _link_job(ctx.root, ctx.job_id, model_id, dataset_id)
    settings_hash = args.settings_hash()
    settings = {**args.settings(), "tasks": args.tasks}
    if args.judge:  # the prompts the judge will be given, recorded even if it never answers
        settings["judge_protocol"] = {"judge": args.judge, "against": args.against, **protocol()}
    model_ref = f"{args.model} + {Path(args.adapter).name}" if args.adapter else args.model
    run_row = evals.start_run(ctx.root, model_ref=model_ref, tasks=args.tasks, mode=args.mode, settings=settings,
                              settings_hash=settings_hash, job_id=ctx.job_id, model_id=model_id,
                              export_id=export_id, dataset_id=dataset_id)
    try:
        ctx.progress(0.0, f"loading {args.model}")
        save = lambda r: evals.save_task(ctx.root, run_row.id, r.task, r.licence, r.metrics, r.samples, settings_hash)
        outcome = evaluate(args, _backend_opener(ctx.root, args, ctx.progress), evals.SqliteResponseCache(ctx.root),
                           ctx.progress, ctx.cancel, on_task=save,
                           on_judge=lambda rec: _record_judge(ctx.root, run_row.id, rec))
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
                        gpus=lambda args: 0 if args.device == "cpu" else args.workers))
