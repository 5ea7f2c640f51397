"""The model registry: rows for local HF folders, with what a user wants to know before picking one.

The bundled model (SmolLM2-135M-Instruct, shipped as a GGUF) is set up on first use in a data dir: asking for
it by name converts it once (under a lock, whichever process asks first) and registers it, so a fresh data dir
needs no set-up step. A user who removes it is not given it back unasked (the marker file records the set-up).

Registration reads only config and safetensors headers (no torch). Models converted or produced by Inkstone
live in the data dir and are `managed`: removing the row deletes their folder; imported folders are left
where the user keeps them. A GGUF file (an export, or one from elsewhere) is no row of its own: it is referred
to by its path wherever a model name is accepted for serving, and llama.cpp runs it.
"""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

from sqlmodel import select

from app.db import session
from app.errors import NotFound
from app.tables import Export, Job, Model
from engine.models.bundled import BUNDLED_NAME
from engine.models.inspect import inspect_hf_folder
from engine.progress import Progress, no_progress

BUNDLED_MARKER = ".bundled-model-registered"  # in the data dir: the bundled model was set up here once


def models_dir(root: Path) -> Path:
    return root / "models"


def list_models(root: Path) -> list[Model]:
    with session(root) as s:
        return list(s.exec(select(Model).order_by(Model.id)).all())


def resolve_model(root: Path, ref: str | int, progress: Progress = no_progress) -> Model:
    """Find a model by id or name; the error lists what is registered. The bundled model's name sets it up
    on first use (a conversion of some seconds, reported through `progress`)."""
    with session(root) as s:
        if isinstance(ref, int) or str(ref).isdigit():
            model = s.get(Model, int(ref))
        else:
            model = s.exec(select(Model).where(Model.name == ref)).first()
        names = ", ".join(m.name for m in s.exec(select(Model)).all())
    if model is None and ref == BUNDLED_NAME:
        model = ensure_bundled(root, progress, again=True)
    if model is None:
        hint = "" if names else "; import one with `inkstone models import PATH` (an HF folder or a .gguf file)"
        raise NotFound(f"no model {ref!r} (registered: {names or 'none'}){hint}")
    return model


def ensure_bundled(root: Path, progress: Progress = no_progress, *, again: bool = False,
                   job_id: int | None = None) -> Model | None:
    """The bundled model's row, converting and registering it if this data dir has not set it up yet.

    Once set up, a removed bundled model stays removed unless `again` (it was asked for by name). None when
    it stays removed, or when the bundled package is not installed (and not `again`).
    """
    marker = root / BUNDLED_MARKER
    if marker.exists() and not again:
        return _by_name(root, BUNDLED_NAME)
    models_dir(root).mkdir(parents=True, exist_ok=True)
    with open(models_dir(root) / ".bundled.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one conversion, whichever process (CLI, job, consumer) asks first
        model = _by_name(root, BUNDLED_NAME)
        if model is None:
            from engine.models.bundled import bundled_gguf_path, ensure_bundled_hf

            try:
                source = bundled_gguf_path()
            except FileNotFoundError:
                if again:
                    raise
                return None
            progress(0.0, f"setting up the bundled model {BUNDLED_NAME} (once per data dir)")
            folder = ensure_bundled_hf(models_dir(root), progress)
            model = register_folder(root, folder, name=BUNDLED_NAME, source="bundled", source_path=str(source),
                                    managed=True, job_id=job_id)
        marker.write_text("1")
    return model


def _by_name(root: Path, name: str) -> Model | None:
    with session(root) as s:
        return s.exec(select(Model).where(Model.name == name)).first()


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
