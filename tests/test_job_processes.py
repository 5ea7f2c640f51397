"""No process a job starts outlives the job, for real: a huey consumer process, its job worker, the worker's
shard pool or torchrun with two gloo ranks on the CPU, killed with SIGKILL from outside (issues 12 and 13).

A killed worker: every process of its job is gone within seconds and the job is interrupted. A killed
consumer: the same, and the next consumer marks the job interrupted. A retried data-prep reuses the shards
the killed run finished, ends with the dataset a clean run makes, and leaves no `.work` folder behind.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from app.procs import end_job_processes, job_processes
from app.registry import register_folder
from engine.data.recipe import load_recipe
from engine.data.runner import RunOptions, run_recipe
from jobs import status as st
from jobs.api import get_job, list_jobs, log_tail, retry, submit
from tests.data.test_pipeline import write_corpus
from tests.finetune.conftest import CHATS, write_jsonl
from tests.helpers import start_consumer, wait_for


@pytest.fixture
def consumer(home, tmp_path):
    procs = []

    def start():
        procs.append(start_consumer(home, tmp_path / f"consumer-{len(procs)}.log"))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)
    for job in list_jobs(home):  # a failed test must not leave training processes behind
        end_job_processes(home, job.id)


def _final(home, job_id, timeout=120):
    return wait_for(lambda: get_job(home, job_id).status in st.FINAL and get_job(home, job_id), timeout,
                    what=f"job {job_id} to end")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead for our purposes
    except FileNotFoundError:
        return False


def _all_gone(pids, timeout: float = 10.0) -> None:
    wait_for(lambda: not [p for p in pids if _alive(p)], timeout, interval=0.1,
             what=f"processes {sorted(p for p in pids if _alive(p))} to die")


# -- data prep: the worker and its shard pool ------------------------------------------------------------------

@pytest.fixture
def corpus(tmp_path):
    files = []
    for i in range(24):  # one shard a file: a run takes long enough to be caught in the middle
        files.append(tmp_path / "corpus" / f"part-{i:02d}.jsonl")
        files[-1].parent.mkdir(exist_ok=True)
        write_corpus(files[-1], n=12, seed=i)
    return files


def _start_data_prep(home, corpus):
    job = submit(home, "data_prep", {"input": ",".join(map(str, corpus)), "workers": 2})
    work = home / "datasets" / f"default-job{job.id}" / ".work"
    wait_for(lambda: len(list(work.glob("shard-*.stats.json"))) >= 3, 120, interval=0.05, what="3 finished shards")
    assert get_job(home, job.id).status == st.RUNNING, "the run ended before it could be interrupted"
    pids = job_processes(home, job.id)
    assert len(pids) >= 3, pids  # the worker and its two shard processes
    return job, pids, work


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["worker", "consumer"])
def test_killed_data_prep_leaves_no_process_and_its_retry_resumes(home, tmp_path, consumer, corpus, kill):
    first = consumer()
    job, pids, work = _start_data_prep(home, corpus)
    finished = len(list(work.glob("shard-*.stats.json")))
    os.kill(get_job(home, job.id).pid if kill == "worker" else first.pid, signal.SIGKILL)
    _all_gone(pids)
    if kill == "consumer":
        first.wait(10)
        consumer()
    interrupted = _final(home, job.id, 30)
    assert interrupted.status == st.INTERRUPTED and "retry" in interrupted.message

    again = retry(home, job.id)
    done = _final(home, again.id)
    assert done.status == st.SUCCEEDED, done.error
    reused = re.search(r"reusing (\d+) finished shards", log_tail(home, again.id))
    assert reused and finished <= int(reused[1]) < len(corpus)  # more may have finished before the kill landed
    assert done.result["output"] == str(work.parent)  # the killed run's folder, named after the first attempt

    clean = run_recipe(load_recipe("default"), RunOptions([str(p) for p in corpus], tmp_path / "clean", workers=2))
    resumed, fresh = (folder / "data.jsonl" for folder in (work.parent, tmp_path / "clean"))
    assert resumed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8")
    assert done.result["records_out"] == clean["records_out"]
    assert not list(home.rglob(".work")) and not (tmp_path / "clean" / ".work").exists()


# -- finetune over two processes: the worker, torchrun and its ranks ----------------------------------------------

@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


def _start_finetune(home, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    job = submit(home, "finetune", {"model": "tiny-llama", "data": str(data), "num_procs": 2, "device": "cpu",
                                    "seq_len": 64, "batch_size": 1, "grad_accum": 1, "epochs": 1000,
                                    "max_steps": 100_000, "save_every": 0, "packing": False,
                                    "grad_checkpointing": False, "lora_dropout": 0.0})
    wait_for(lambda: get_job(home, job.id).progress > 0 or get_job(home, job.id).status in st.FINAL, 240,
             what="the first training step")
    assert get_job(home, job.id).status == st.RUNNING, log_tail(home, job.id)
    pids = job_processes(home, job.id)
    assert len(pids) >= 4, pids  # the worker, torchrun and two ranks
    return job, pids


@pytest.mark.slow
def test_killed_worker_ends_every_training_process_and_the_job_is_interrupted(home, tmp_path, consumer, tiny):
    consumer()
    job, pids = _start_finetune(home, tmp_path)
    os.kill(get_job(home, job.id).pid, signal.SIGKILL)
    _all_gone(pids)
    ended = _final(home, job.id, 30)
    assert ended.status == st.INTERRUPTED and "SIGKILL" in ended.message


@pytest.mark.slow
def test_killed_consumer_ends_every_training_process(home, tmp_path, consumer, tiny):
    first = consumer()
    job, pids = _start_finetune(home, tmp_path)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    _all_gone(pids)
    consumer()
    assert _final(home, job.id, 30).status == st.INTERRUPTED
