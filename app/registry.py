"""The model registry: rows for local HF folders, with what a user wants to know before picking one.

Registration reads only config and safetensors headers (no torch). Models converted or produced by Inkstone
live in the data dir and are `managed`: removing the row deletes their folder; imported folders are left
where the user keeps them. A GGUF file (an export, or one from elsewhere) is no row of its own: it is referred
to by its path wherever a model name is accepted for serving, and llama.cpp runs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlmodel import select

from app.db import NotFound, session
from app.tables import Export, Job, Model
from engine.models.inspect import inspect_hf_folder


def models_dir(root: Path) -> Path:
    return root / "models"


def list_models(root: Path) -> list[Model]:
    with session(root) as s:
        return list(s.exec(select(Model).order_by(Model.id)).all())


def resolve_model(root: Path, ref: str | int) -> Model:
    """Find a model by id or name; the error lists what is registered."""
    with session(root) as s:
        if isinstance(ref, int) or str(ref).isdigit():
            model = s.get(Model, int(ref))
        else:
            model = s.exec(select(Model).where(Model.name == ref)).first()
        if model is None:
            names = ", ".join(m.name for m in s.exec(select(Model)).all()) or "none"
            raise NotFound(f"no model {ref!r} (registered: {names})")
        return model


def register_folder(root: Path, folder: str | Path, *, name: str = "", source: str = "folder",
                    source_path: str = "", managed: bool = False, parent_model_id: int | None = None,
                    dataset_id: int | None = None, job_id: int | None = None) -> Model:
    folder = Path(folder).expanduser().resolve()
    info = inspect_hf_folder(folder)
    name = name or folder.name
    with session(root) as s:
        if s.exec(select(Model).where(Model.name == name)).first():
            raise ValueError(f"a model named {name!r} is already registered; choose another name")
        model = Model(name=name, path=str(folder), source=source, source_path=source_path, arch=info.arch,
                      params=info.params, context_len=info.context_len, dtype=info.dtype,
                      size_bytes=info.size_bytes, has_chat_template=info.has_chat_template, managed=managed,
                      parent_model_id=parent_model_id, dataset_id=dataset_id, job_id=job_id)
        s.add(model)
    return model


def remove_model(root: Path, ref: str | int) -> Model:
    model = resolve_model(root, ref)
    with session(root) as s:
        children = s.exec(select(Model).where(Model.parent_model_id == model.id)).all()
        if children:
            raise ValueError(f"model {model.name!r} is the base of {', '.join(c.name for c in children)}; "
                             "remove those first")
        for job in s.exec(select(Job).where(Job.model_id == model.id)).all():
            job.model_id = None
            s.add(job)
        s.delete(s.get(Model, model.id))
    if model.managed:
        shutil.rmtree(model.path, ignore_errors=True)
    return model


# ---- GGUF files: served by llama.cpp, referred to by path where a registered model is by name ----------------

def is_gguf(model: str) -> bool:
    """Whether a model reference names a GGUF file (served by llama.cpp) rather than a registered model."""
    return model.lower().endswith(".gguf")


def display_name(model: str) -> str:
    """How pickers and chat bubbles show a model: a GGUF by its file name."""
    return f"{Path(model).name} · llama.cpp" if is_gguf(model) else model


def gguf_files(root: Path) -> list[str]:
    """Exported GGUF files that are still on disk, newest first: the Chat page can run them too."""
    with session(root) as s:
        paths = s.exec(select(Export.path).where(Export.format == "gguf").order_by(Export.id.desc())).all()
    return [p for p in dict.fromkeys(paths) if p and Path(p).is_file()]


def gguf_source(root: Path, path: Path) -> int | None:
    """The registered model an exported GGUF came from (None for a file from elsewhere)."""
    with session(root) as s:
        export = s.exec(select(Export).where(Export.path == str(path.resolve()))).first()
    return export.model_id if export else None
