"""Job kind `export_gguf` (`inkstone export gguf`): a registered model, with a LoRA adapter merged in if given,
to verified GGUF files for llama.cpp / Ollama / LM Studio, one Export row per file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

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
    return {"output": str(out), "files": [{"quant": f.quant, "path": str(f.path), "size_bytes": f.size_bytes,
                                           **{k: v for k, v in f.metrics.items() if k != "answers"}}
                                          for f in files]}


KIND = register(JobKind("export_gguf", "Export GGUF", ExportGgufArgs, "jobs.tasks.export_gguf:run",
                        cli="export gguf"))
