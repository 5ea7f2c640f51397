"""Job kind `export_gguf` (`inkstone export gguf`): a registered model, with a LoRA adapter merged in if given,
to verified GGUF files for llama.cpp / Ollama / LM Studio, one Export row per file.

With `--eval-tasks`, quant damage becomes a number: when the files are written, one `eval` job for the HF model
and one per file are submitted with the same settings, and this job runs them one after another (each in its own
worker process, with its own row and log), so it ends — from the app or the CLI alike — with every score stored.
The job's result lists them; the Export page tabulates them against the HF model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class ExportGgufArgs:
    model: str = "smollm2-135m-instruct"
    """Registered model name or id (the base model when an adapter is given)."""
    quant: str = "f16,q8_0,q4_k_m"
    """Comma-separated GGUF types: f32, f16, bf16, q8_0, q4_0 or llama.cpp K-quants (q4_k_m, q5_k_m, q6_k, …)."""
    adapter: str = ""
    """A PEFT LoRA adapter folder to merge into the model before export."""
    output: str = ""
    """Folder for the GGUF files and Modelfiles (default: the job's own folder in the data dir)."""
    name: str = ""
    """Base of the file names (default: the model's name, plus the adapter folder's name)."""
    verify: bool = True
    """Check every file with llama.cpp against the HF model (tokenizer, chat template, logits, speed)."""
    threads: Annotated[int, Field(ge=0, le=512)] = 0
    """CPU threads for llama.cpp (0: all cores)."""
    eval_tasks: str = ""
    """After the export, evaluate the HF model and every file on these tasks (e.g. arc_easy,mmlu); empty: none."""
    eval_limit: Annotated[int, Field(ge=0)] = 50
    """Questions per task in those evaluations (0: all)."""
    eval_mode: Literal["ppl", "gen"] = "ppl"
    """Evaluation mode: ppl (log-likelihood of each option) or gen (generate, then extract the answer)."""

    def eval_params(self, model: str) -> dict:
        """The `eval` job arguments for one model of this export: the same settings for the HF model and each file."""
        return {"model": model, "tasks": self.eval_tasks, "limit": self.eval_limit, "mode": self.eval_mode}

    def validate(self) -> None:
        from engine.export.quant_types import parse_quants
        from engine.models.merge import check_adapter

        parse_quants(self.quant)  # ExportError is a ValueError that starts with "quant:"
        if self.adapter:
            if not Path(self.adapter).expanduser().is_dir():
                raise ValueError(f"adapter: {self.adapter} is not a folder")
            check_adapter(Path(self.adapter).expanduser())
        if self.output and Path(self.output).expanduser().is_file():
            raise ValueError(f"output: {self.output} is a file; give a folder")
        if self.eval_tasks:
            from engine.eval.config import EvalConfig

            if self.adapter:  # the merged HF model is scratch that the export deletes: nothing to compare with
                raise ValueError("eval_tasks: evaluating the quants of a model with an adapter needs the merged "
                                 "model registered; merge it first (inkstone merge_adapter) and export that")
            try:
                EvalConfig(**self.eval_params(self.model)).validate()
            except ValueError as e:
                raise ValueError(f"eval_tasks: {e}") from None


def run(args: ExportGgufArgs, ctx: JobContext) -> dict:
    from app.db import session
    from app.registry import resolve_model
    from app.tables import Export, Job
    from engine.export.exporter import ExportRequest, export_gguf

    model = resolve_model(ctx.root, args.model)
    with session(ctx.root) as s:
        job = s.get(Job, ctx.job_id)
        job.model_id = model.id
        s.add(job)
    adapter = str(Path(args.adapter).expanduser().resolve()) if args.adapter else ""
    out = Path(args.output).expanduser().resolve() if args.output else ctx.work_dir
    name = args.name or (f"{model.name}-{Path(adapter).name}" if adapter else model.name)
    files = export_gguf(ExportRequest(model_dir=model.path, quants=args.quant, output_dir=str(out),
                                      adapter_dir=adapter, name=name, verify=args.verify,
                                      threads=args.threads or os.cpu_count() or 1), ctx.progress, ctx.cancel)
    with session(ctx.root) as s:
        for f in files:
            s.add(Export(model_id=model.id, job_id=ctx.job_id, adapter_path=adapter, format="gguf", quant=f.quant,
                         path=str(f.path), size_bytes=f.size_bytes,
                         metrics={**f.metrics, "modelfile": str(f.modelfile)}))
    result = {"output": str(out), "files": [{"quant": f.quant, "path": str(f.path), "size_bytes": f.size_bytes,
                                             **{k: v for k, v in f.metrics.items() if k != "answers"}}
                                            for f in files]}
    if args.eval_tasks:
        result["evals"] = run_evals(ctx, args, model.name, [(f.quant, str(f.path)) for f in files])
    return result


def submit_evals(root: Path, export_job_id: int, args: ExportGgufArgs, model_name: str,
                 files: list[tuple[str, str]], enqueue: bool) -> list[dict]:
    """One `eval` job for the HF model, then one per exported file: [{"quant": "hf"|type, "job_id": …}]."""
    from jobs.api import submit

    targets = [("hf", model_name)] + files
    jobs = []
    for quant, model in targets:
        label = model_name if quant == "hf" else Path(model).name
        job = submit(root, "eval", args.eval_params(model), title=f"Evaluate {label} (export #{export_job_id})",
                     enqueue=enqueue)
        jobs.append({"quant": quant, "job_id": job.id})
    return jobs


def run_evals(ctx: JobContext, args: ExportGgufArgs, model_name: str, files: list[tuple[str, str]]) -> list[dict]:
    """Submit the evaluations, then run them here one after another, each its own recorded job and process.

    One at a time on purpose: queued together they would all start at once on a CPU machine, and llama.cpp's
    spinning threads slow down about tenfold when its cores are oversubscribed (measured: 75 s against 7.8 s
    for the same ten ARC questions).
    """
    from jobs.api import get_job

    jobs = submit_evals(ctx.root, ctx.job_id, args, model_name, files, enqueue=False)
    for n, entry in enumerate(jobs):
        ctx.progress(n / len(jobs), f"evaluating {entry['quant']} (job #{entry['job_id']})")
        _run_job_here(ctx, entry["job_id"], [e["job_id"] for e in jobs[n + 1:]])
    ctx.progress(1.0, f"{len(jobs)} evaluations done")
    return [{**e, "status": get_job(ctx.root, e["job_id"]).status} for e in jobs]


def _run_job_here(ctx: JobContext, job_id: int, later: list[int]) -> None:
    """Run one recorded job in its own worker process; cancelling this export cancels it and the ones after."""
    import threading

    from jobs.api import cancel
    from jobs.runner import run_job

    worker = threading.Thread(target=run_job, args=(ctx.root, job_id), daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
        if ctx.cancel.is_set():
            for other in [job_id, *later]:
                cancel(ctx.root, other)
            worker.join()
            break
    from engine.progress import check_cancel

    check_cancel(ctx.cancel)


KIND = register(JobKind("export_gguf", "Export GGUF", ExportGgufArgs, "jobs.tasks.export_gguf:run",
                        cli="export gguf"))
