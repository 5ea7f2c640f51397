"""`inkstone export gguf` as a user types it: the job runs (inline, no app), writes the files where asked and
one Export row per file, linked to the model and the job; bad arguments are refused before a job exists."""

from __future__ import annotations

import pytest
from sqlmodel import select

from app.db import session
from app.registry import register_folder
from app.tables import Export
from jobs.api import list_jobs, submit
from tests.test_cli import cli


def test_export_job_end_to_end(home, tiny_model_dir, tmp_path):
    model = register_folder(home, tiny_model_dir("mistral"), name="tiny")
    out = tmp_path / "gguf"
    code, text = cli(home, "export", "gguf", "--model", "tiny", "--quant", "f16,q8_0", "--output", str(out),
                     "--threads", "2")
    assert code == 0 and "succeeded" in text, text
    job = list_jobs(home)[0]
    assert job.kind == "export_gguf" and job.model_id == model.id
    with session(home) as s:
        rows = s.exec(select(Export).order_by(Export.id)).all()
    assert [r.quant for r in rows] == ["f16", "q8_0"]
    for r in rows:
        assert r.model_id == model.id and r.job_id == job.id and r.format == "gguf"
        assert r.path == str(out / f"tiny.{r.quant.upper()}.gguf") and r.size_bytes > 0
        assert {"top1_agreement", "ppl_delta_pct", "tokens_per_s", "modelfile"} <= set(r.metrics)
    assert job.result["output"] == str(out) and len(job.result["files"]) == 2


@pytest.mark.parametrize("params, message", [
    ({"quant": "f16,q9_z"}, "quant: unknown type(s) q9_z"),
    ({"adapter": "/no/such/adapter"}, "adapter: /no/such/adapter is not a folder"),
])
def test_bad_arguments_are_refused_at_submit(home, params, message):
    with pytest.raises(ValueError) as e:
        submit(home, "export_gguf", params)
    assert message in str(e.value)
    assert list_jobs(home) == []
