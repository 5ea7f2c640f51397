"""`inkstone export gguf … --eval-tasks`: the export job submits one `eval` job for the HF model and one per
file, all with the same settings, and runs them one after another (each its own recorded job and worker
process); each GGUF's run is linked to its Export row, the HF model's to the model."""

from __future__ import annotations

import pytest
from sqlmodel import select

from app.db import session
from app.registry import register_folder
from app.tables import EvalResult, EvalRun, Export, Job
from jobs import status as st
from jobs.api import get_job, list_jobs, submit
from jobs.tasks.export_gguf import ExportGgufArgs, submit_evals
from tests.test_cli import cli


@pytest.mark.parametrize("params, message", [
    ({"eval_tasks": "arc_easy,no_such_task"}, "eval_tasks: "),
    ({"eval_tasks": "arc_easy", "adapter": "{adapter}"}, "eval_tasks: evaluating the quants of a model with an "
                                                         "adapter needs the merged model registered"),
    ({"eval_tasks": "arc_easy", "eval_limit": -1}, "field 'eval_limit'"),
])
def test_bad_eval_arguments_are_refused_before_a_job_exists(home, tmp_path, params, message):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "base_model_name_or_path": "x"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    params = {k: v.format(adapter=adapter) if isinstance(v, str) else v for k, v in params.items()}
    with pytest.raises(ValueError) as e:
        submit(home, "export_gguf", params)
    assert message in str(e.value)
    assert list_jobs(home) == []


def test_submit_evals_records_one_job_per_model_with_the_same_settings(home):
    args = ExportGgufArgs(model="smol", eval_tasks="arc_easy,mmlu", eval_limit=20, eval_mode="gen")
    made = submit_evals(home, 41, args, "smol", [("f16", "/x/smol.F16.gguf"), ("q8_0", "/x/smol.Q8_0.gguf")],
                        enqueue=False)
    assert [m["quant"] for m in made] == ["hf", "f16", "q8_0"]
    jobs = [get_job(home, m["job_id"]) for m in made]
    assert [j.kind for j in jobs] == ["eval"] * 3
    assert [j.params["model"] for j in jobs] == ["smol", "/x/smol.F16.gguf", "/x/smol.Q8_0.gguf"]
    for j in jobs:
        assert {k: v for k, v in j.params.items() if k != "model"} == {"tasks": "arc_easy,mmlu", "limit": 20,
                                                                      "mode": "gen"}
        assert j.status == st.QUEUED and "(export #41)" in j.title


def _check_linked_runs(home, export_job: Job, quants: list[str]) -> dict[str, float]:
    evals = export_job.result["evals"]
    assert [e["quant"] for e in evals] == ["hf", *quants]
    scores = {}
    with session(home) as s:
        exports = {e.path: e for e in s.exec(select(Export).where(Export.job_id == export_job.id)).all()}
        for entry in evals:
            job = s.get(Job, entry["job_id"])
            assert job.status == st.SUCCEEDED, job.error
            run = s.exec(select(EvalRun).where(EvalRun.job_id == job.id)).one()
            assert run.status == "done" and run.mode == "ppl" and run.tasks == "arc_easy"
            assert run.settings["limit"] == 3
            if entry["quant"] == "hf":
                assert run.export_id is None and run.model_id == export_job.model_id
            else:
                assert run.export_id == exports[job.params["model"]].id
            acc = s.exec(select(EvalResult).where(EvalResult.run_id == run.id, EvalResult.metric == "acc")).one()
            assert acc.task == "arc_easy" and acc.n == 3
            scores[entry["quant"]] = acc.value
    return scores


@pytest.mark.slow
def test_cli_export_runs_the_evaluations_after_the_files(home, tiny_model_dir, tmp_path):
    register_folder(home, tiny_model_dir("mistral"), name="tiny")
    code, text = cli(home, "export", "gguf", "--model", "tiny", "--quant", "f32", "--no-verify", "--output",
                     str(tmp_path / "out"), "--threads", "2", "--eval-tasks", "arc_easy", "--eval-limit", "3")
    assert code == 0 and "succeeded" in text, text
    export_job = next(j for j in list_jobs(home) if j.kind == "export_gguf")
    assert [e["status"] for e in export_job.result["evals"]] == [st.SUCCEEDED] * 2
    scores = _check_linked_runs(home, export_job, ["f32"])
    assert scores["f32"] == scores["hf"]  # a float32 export of the same weights answers the same
