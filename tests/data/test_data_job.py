"""The `data_prep` job kind for real: submitted to the queue, run by a consumer process and its worker, the
output dataset registered with its lineage; bad arguments refused before anything is queued; an input that
yields nothing fails the job with the reason."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from app.db import session
from app.tables import Dataset
from jobs import status as st
from jobs.api import get_job, list_jobs, submit
from tests.data.test_pipeline import write_corpus
from tests.helpers import start_consumer, wait_for


@pytest.fixture
def consumer(home, tmp_path):
    proc = start_consumer(home, tmp_path / "consumer.log")
    yield proc
    proc.terminate()
    proc.wait(10)


def finished(home, job_id):
    return wait_for(lambda: get_job(home, job_id).status in st.FINAL and get_job(home, job_id), 120, what="job")


def test_recipe_runs_through_the_queue_and_registers_the_dataset(home, tmp_path, consumer, bundled_model_dir):
    write_corpus(tmp_path / "in.jsonl", n=40)
    job = submit(home, "data_prep", {"input": str(tmp_path / "in.jsonl"), "recipe": "default", "name": "web-zh-en",
                                     "tokenizer": str(bundled_model_dir), "workers": 2})
    done = finished(home, job.id)
    assert done.status == st.SUCCEEDED, done.error
    assert done.progress == 1.0 and done.result["records_out"] == 40
    with session(home) as s:
        ds = s.exec(select(Dataset)).one()
    assert ds.name == "web-zh-en" and ds.job_id == job.id and ds.rows == 40 and ds.size_bytes > 0
    assert ds.inputs == [str(tmp_path / "in.jsonl")]
    assert [step["step"] for step in ds.recipe["steps"]][-4:] == ["tokenize", "exact_dedup", "minhash_dedup",
                                                                  "format"]
    manifest = json.loads((home / "datasets" / "web-zh-en" / "manifest.json").read_text())
    assert manifest["records_out"] == 40 and sum(manifest["histograms"]["tokens"]["counts"]) == 40
    first = json.loads((home / "datasets" / "web-zh-en" / "data.jsonl").read_text().splitlines()[0])
    assert first["n_tokens"] > 0 and first["source"].startswith(str(tmp_path / "in.jsonl"))


def test_input_that_yields_nothing_fails_with_the_reason(home, tmp_path, consumer):
    (tmp_path / "short.jsonl").write_text('{"text": "tiny"}\n')
    job = submit(home, "data_prep", {"input": str(tmp_path / "short.jsonl")})
    done = finished(home, job.id)
    assert done.status == st.FAILED
    assert "all 1 records were dropped: length/too_short 1" in done.error


def test_bad_arguments_are_refused_before_queueing(home, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="input: give at least one file"):
        submit(home, "data_prep", {})
    with pytest.raises(ValueError, match="does not exist"):
        submit(home, "data_prep", {"input": str(tmp_path / "missing.jsonl")})
    with pytest.raises(ValueError, match="recipe: 'nope' is neither a preset"):
        submit(home, "data_prep", {"input": str(tmp_path / "in.jsonl"), "recipe": "nope"})
    (tmp_path / "r.json").write_text(json.dumps({"steps": [{"step": "length", "min_chars": "x"}]}))
    with pytest.raises(ValueError, match=r"step 1 \(length\): min_chars"):
        submit(home, "data_prep", {"input": str(tmp_path / "in.jsonl"), "recipe": str(tmp_path / "r.json")})
    assert list_jobs(home) == []
