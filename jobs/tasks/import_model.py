"""Job kind `import_model`: register an HF folder, convert a GGUF file, or set up the bundled model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class ImportModelArgs:
    path: str = ""
    """An HF model folder (config + safetensors + tokenizer) or a .gguf file of a llama-family model."""
    name: str = ""
    """Name in the registry (default: the folder or file name)."""
    bundled: bool = False
    """Set up the bundled default model (SmolLM2-135M-Instruct) instead of a path."""

    def validate(self) -> None:
        if self.bundled:
            return
        if not self.path:
            raise ValueError("path: give a model folder or a .gguf file (or set bundled)")
        path = Path(self.path).expanduser()
        if not path.exists():
            raise ValueError(f"path: {path} does not exist")
        if path.is_file() and path.suffix.lower() != ".gguf":
            raise ValueError(f"path: {path} is a file but not a .gguf; give an HF folder or a .gguf file")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "model"


def run(args: ImportModelArgs, ctx: JobContext) -> dict:
    from app.registry import ensure_bundled, models_dir, register_folder

    if args.bundled:
        model = ensure_bundled(ctx.root, ctx.progress, again=True, job_id=ctx.job_id)
        ctx.progress(1.0, f"registered {model.name}")
        return {"model_id": model.id, "name": model.name}
    path = Path(args.path).expanduser().resolve()
    if path.is_file() and path.suffix.lower() == ".gguf":
        from engine.models.convert import gguf_to_hf
        from engine.models.inspect import check_gguf_file

        check_gguf_file(path)  # fail fast, before the long conversion
        name = args.name or _slug(path.stem)
        folder = gguf_to_hf(path, models_dir(ctx.root) / name, ctx.progress)
        model = register_folder(ctx.root, folder, name=name, source="gguf", source_path=str(path),
                                managed=True, job_id=ctx.job_id)
    else:
        ctx.progress(0.5, f"checking {path}")
        model = register_folder(ctx.root, path, name=args.name, source="folder", source_path=str(path),
                                job_id=ctx.job_id)
    ctx.progress(1.0, f"registered {model.name}")
    return {"model_id": model.id, "name": model.name}


KIND = register(JobKind("import_model", "Import model", ImportModelArgs, "jobs.tasks.import_model:run"))
