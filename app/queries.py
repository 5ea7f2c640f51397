"""The read-only questions the pages ask of the store: counts for Home, datasets with their manifests, a job's
lineage, exports with their model, a finetune run's loss curves.

Kept here rather than in the pages so the pages hold widgets only and any face (CLI, evaluation, agents) asks
the same question the same way. Each function opens one short session and returns plain rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import func, select

from app.db import session
from app.tables import Dataset, Export, Job, Metric, Model


@dataclass
class Counts:
    models: int = 0
    datasets: int = 0
    jobs: dict[str, int] = field(default_factory=dict)
    """Job count by status."""


def counts(root: Path) -> Counts:
    with session(root) as s:
        by_status = s.exec(select(Job.status, func.count()).group_by(Job.status)).all()
        return Counts(models=s.exec(select(func.count()).select_from(Model)).one(),
                      datasets=s.exec(select(func.count()).select_from(Dataset)).one(),
                      jobs=dict(by_status))


def model_names(root: Path) -> list[str]:
    with session(root) as s:
        return list(s.exec(select(Model.name).order_by(Model.name)).all())


def list_datasets(root: Path) -> list[Dataset]:
    """Newest first."""
    with session(root) as s:
        return list(s.exec(select(Dataset).order_by(Dataset.id.desc())).all())


def dataset_with_manifest(root: Path, dataset_id: int) -> tuple[Dataset | None, dict | None]:
    """The dataset row and the run's manifest.json (None when the row or the file is gone)."""
    with session(root) as s:
        ds = s.get(Dataset, dataset_id)
    if ds is None:
        return None, None
    path = Path(ds.path) / "manifest.json"
    return ds, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def job_kinds(root: Path) -> list[str]:
    """Every job kind that has at least one row, sorted."""
    with session(root) as s:
        return list(s.exec(select(Job.kind).distinct().order_by(Job.kind)).all())


@dataclass
class Lineage:
    """What a job is linked to: its model and dataset, the jobs that retried it, the models it produced."""

    model: str = ""
    dataset: str = ""
    retried_as: list[int] = field(default_factory=list)
    produced_models: list[str] = field(default_factory=list)


def job_lineage(root: Path, job: Job) -> Lineage:
    with session(root) as s:
        model = s.get(Model, job.model_id) if job.model_id else None
        dataset = s.get(Dataset, job.dataset_id) if job.dataset_id else None
        return Lineage(
            model=model.name if model else "",
            dataset=dataset.name if dataset else "",
            retried_as=list(s.exec(select(Job.id).where(Job.retry_of == job.id).order_by(Job.id)).all()),
            produced_models=list(s.exec(select(Model.name).where(Model.job_id == job.id)).all()),
        )


def exports_with_model(root: Path) -> list[tuple[Export, str]]:
    """Every exported file, newest first, with the name of its model ("—" once the model is removed)."""
    with session(root) as s:
        rows = s.exec(select(Export, Model.name).join(Model, isouter=True).order_by(Export.id.desc())).all()
        return [(e, name or "—") for e, name in rows]


def loss_curves(root: Path, job_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
    """job id -> [(step, loss)], for overlaying several finetune runs."""
    with session(root) as s:
        rows = s.exec(select(Metric).where(Metric.job_id.in_(job_ids), Metric.name == "loss")
                      .order_by(Metric.step)).all()
    curves: dict[int, list[tuple[int, float]]] = {j: [] for j in job_ids}
    for m in rows:
        curves[m.job_id].append((m.step, m.value))
    return curves
