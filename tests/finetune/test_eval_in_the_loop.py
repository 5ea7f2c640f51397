"""Eval in the loop: a finetune asked to evaluate queues an `eval` job for its base model as it starts and one for
its result when that exists, with identical eval settings (so the settings hashes match), and records both job
ids. Real data dir, real worker processes (jobs.runner without a consumer), a tiny model and a hand-made test set.
"""

from __future__ import annotations

import pytest

from app import evals
from app.finetune_wizard import before_after
from app.registry import register_folder, resolve_model
from jobs import status as st
from jobs.api import cancel, get_job, retry, submit
from jobs.kinds import get_kind
from jobs.runner import run_job
from jobs.tasks.finetune import earlier_base_eval, record_evals
from jobs.transitions import finish

FAST = {"seq_len": 64, "batch_size": 2, "grad_accum": 1, "lr": 0.01, "device": "cpu", "packing": False,
        "grad_checkpointing": False, "epochs": 1, "save_every": 0}


@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


@pytest.fixture
def quiz(tmp_path):
    """Three multiple-choice questions in the OpenCompass custom CSV shape."""
    path = tmp_path / "quiz.csv"
    path.write_text("question,A,B,C,answer\nCapital of France?,Rome,Paris,Oslo,B\n"
                    "Two plus two?,four,five,six,A\nColor of the sky?,green,red,blue,C\n", encoding="utf-8")
    return path


def _without_model(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "model"}


def test_an_adapter_run_queues_base_and_result_evals_with_one_settings_hash(home, tiny, chat_file, quiz):
    job = submit(home, "finetune", {"model": "tiny-llama", "data": str(chat_file), **FAST,
                                    "eval_tasks": str(quiz), "eval_limit": 2, "eval_mode": "ppl"}, enqueue=False)
    run_job(home, job.id)
    done = get_job(home, job.id)
    assert done.status == st.SUCCEEDED, done.error
    recorded = done.result["evals"]
    base, result = get_job(home, recorded["base_job"]), get_job(home, recorded["result_job"])
    assert base.kind == result.kind == "eval" and base.id < result.id
    assert base.status == result.status == st.QUEUED  # no consumer here: they wait in the queue
    assert base.params["model"] == "tiny-llama"
    adapter = home / "jobs" / str(job.id) / "adapter"  # an unmerged adapter is applied by the eval job itself
    assert result.params["model"] == "tiny-llama" and result.params.pop("adapter") == str(adapter)
    assert (adapter / "adapter_config.json").is_file()
    assert _without_model(base.params) == _without_model(result.params) == {
        "tasks": str(quiz), "limit": 2, "mode": "ppl", "device": "cpu"}
    kind = get_kind("eval")
    assert {kind.parse_args(j.params).settings_hash() for j in (base, result)} == {recorded["settings_hash"]}
    assert f"finetune #{job.id}" in base.title and "result" in result.title


@pytest.mark.slow
def test_merged_run_is_evaluated_before_and_after_and_compared(home, tiny, chat_file, quiz):
    job = submit(home, "finetune", {"model": "tiny-llama", "data": str(chat_file), **FAST, "merge": True,
                                    "name": "tiny-chat", "eval_tasks": str(quiz), "eval_limit": 0}, enqueue=False)
    run_job(home, job.id)
    recorded = get_job(home, job.id).result["evals"]
    assert get_job(home, recorded["result_job"]).params["model"] == "tiny-chat"  # the registered result
    view = before_after(home, job.id)
    assert view["sides"]["base"]["state"] == "pending" and view["rows"] == []
    for side in ("base_job", "result_job"):
        run_job(home, recorded[side])
        assert get_job(home, recorded[side]).status == st.SUCCEEDED, get_job(home, recorded[side]).error
    view = before_after(home, job.id)
    assert {s["state"] for s in view["sides"].values()} == {"done"}
    runs = {r.job_id: r for r in evals.list_runs(home)}
    assert runs[recorded["result_job"]].model_id == resolve_model(home, "tiny-chat").id
    acc = next(r for r in view["rows"] if r["task"] == str(quiz) and r["metric"] == "acc")
    assert acc["same_settings"] and acc["base"] is not None and acc["result"] is not None
    assert acc["delta"] == pytest.approx(acc["result"] - acc["base"]) and acc["stderr"] is not None


def test_unknown_eval_task_is_refused_before_anything_is_queued(home, tiny, chat_file):
    with pytest.raises(ValueError, match=r"eval_tasks: unknown task 'arc_eazy'"):
        submit(home, "finetune", {"model": "tiny-llama", "data": str(chat_file), "eval_tasks": "arc_eazy"},
               enqueue=False)
    with pytest.raises(ValueError, match=r"eval_mode"):
        submit(home, "finetune", {"model": "tiny-llama", "data": str(chat_file), "eval_tasks": "arc_easy",
                                  "eval_mode": "judge"}, enqueue=False)


def test_a_retry_reuses_the_base_evaluation_unless_it_was_stopped(home, tiny, chat_file):
    params = {"model": "tiny-llama", "data": str(chat_file), "eval_tasks": "arc_easy", "eval_limit": 5}
    first = submit(home, "finetune", params, enqueue=False)
    base = submit(home, "eval", {"model": "tiny-llama", "tasks": "arc_easy", "limit": 5}, enqueue=False)
    record_evals(home, first.id, {"base_job": base.id, "result_job": None})
    finish(home, first.id, st.FAILED, error="out of memory")
    assert get_job(home, first.id).result["evals"]["base_job"] == base.id  # kept through the failure
    second = retry(home, first.id)
    assert earlier_base_eval(home, second.id) == base.id
    cancel(home, base.id)
    assert earlier_base_eval(home, second.id) is None
