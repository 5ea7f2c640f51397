"""The finetune job end to end: CLI, a real consumer, metric rows, kill -9 then retry-resume, merge+register."""

from __future__ import annotations

import os
import signal

import pytest
from sqlmodel import select

from app.db import session
from app.registry import register_folder, resolve_model
from app.tables import Dataset, Model
from engine.finetune.checkpoint import latest_checkpoint
from jobs import status as st
from jobs.api import get_job, job_metrics, list_jobs, log_tail, retry, submit
from tests.helpers import start_consumer, wait_for

FAST = {"seq_len": 64, "batch_size": 2, "grad_accum": 1, "lr": 0.01, "device": "cpu", "packing": False,
        "grad_checkpointing": False}


@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


def _final(home, job_id, timeout=150):
    return wait_for(lambda: get_job(home, job_id).status in st.FINAL and get_job(home, job_id), timeout,
                    what=f"job {job_id}")


def test_cli_finetune_merges_and_registers_with_lineage(home, tiny, chat_file):
    from cli import main

    code = main(["--data-dir", str(home), "finetune", "tiny-llama", "--data", str(chat_file), "--method", "lora",
                 "--epochs", "2", "--seq-len", "64", "--device", "cpu", "--no-grad-checkpointing", "--merge",
                 "--name", "tiny-chat"])
    job = list_jobs(home, kind="finetune")[0]
    assert code == 0, job.error
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= {m.name for m in job_metrics(home, job.id)}
    merged = resolve_model(home, "tiny-chat")
    with session(home) as s:
        dataset = s.get(Dataset, merged.dataset_id)
    assert merged.source == "merge" and merged.parent_model_id == tiny.id and merged.job_id == job.id
    assert dataset.path == str(chat_file) and dataset.format == "messages" and job.dataset_id == dataset.id
    assert merged.has_chat_template

    # "train more epochs" on the finished run: a new job resumes from its last checkpoint
    code = main(["--data-dir", str(home), "finetune", "tiny-llama", "--data", str(chat_file), "--epochs", "3",
                 "--seq-len", "64", "--device", "cpu", "--no-grad-checkpointing", "--resume-from", str(job.id)])
    more = list_jobs(home, kind="finetune")[0]
    assert code == 0 and more.id != job.id, more.error
    assert more.result["steps"] == 3 and len(more.result["losses"]) == 1  # 2 steps done, 1 more epoch

    again = submit(home, "merge_adapter", {"job": job.id, "name": "tiny-chat-2"}, enqueue=False)
    from jobs.runner import run_job

    run_job(home, again.id)
    assert get_job(home, again.id).status == st.SUCCEEDED, get_job(home, again.id).error
    with session(home) as s:
        assert s.exec(select(Model).where(Model.name == "tiny-chat-2")).first().parent_model_id == tiny.id


def test_kill_9_then_retry_resumes_from_checkpoint(home, tiny, chat_file, tmp_path):
    consumer = start_consumer(home, tmp_path / "consumer.log")
    try:
        job = submit(home, "finetune", {"model": "tiny-llama", "data": str(chat_file), "epochs": 200,
                                        "save_every": 2, **FAST})
        run_dir = home / "jobs" / str(job.id)
        wait_for(lambda: latest_checkpoint(run_dir) is not None, 120, what="first checkpoint")
        os.kill(consumer.pid, signal.SIGKILL)  # the worker dies with it
        consumer.wait(10)
        consumer = start_consumer(home, tmp_path / "consumer.log")
        assert _final(home, job.id, 60).status == st.INTERRUPTED
        saved = int(latest_checkpoint(run_dir).name.split("-")[1])
        resumed = retry(home, job.id)
        wait_for(lambda: "resuming from" in log_tail(home, resumed.id), 120, what="resume message")
        from jobs.api import cancel

        wait_for(lambda: any(m.name == "loss" for m in job_metrics(home, resumed.id)), 120, what="a step")
        cancel(home, resumed.id)
        done = _final(home, resumed.id)
        assert done.status == st.CANCELLED
        first_step = min(m.step for m in job_metrics(home, resumed.id) if m.name == "loss")
        assert first_step == saved + 1  # continued where the killed run's checkpoint left off
        assert latest_checkpoint(home / "jobs" / str(resumed.id)) is not None  # cancel wrote one
    finally:
        consumer.terminate()
        consumer.wait(10)


def test_bad_data_is_refused_before_queueing(home, tiny, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
    with pytest.raises(ValueError, match=r"data: .*bad.jsonl: line 2: field 'output' is missing"):
        submit(home, "finetune", {"model": "tiny-llama", "data": str(bad)})
    with pytest.raises(ValueError, match="field 'lr'"):
        submit(home, "finetune", {"model": "tiny-llama", "data": str(bad), "lr": -1})
    assert not list_jobs(home)
