"""The job queue for real: a huey consumer process, worker processes, progress rows, cancel, kill -9."""

from __future__ import annotations

import os
import signal

import pytest

from app.registry import register_folder
from jobs import status as st
from jobs.api import cancel, get_job, job_metrics, list_jobs, log_tail, retry, submit
from jobs.runner import _claim_gpus
from tests.helpers import start_consumer, wait_for


@pytest.fixture
def consumer(home, tmp_path):
    procs = []

    def start():
        procs.append(start_consumer(home, tmp_path / "consumer.log"))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


@pytest.fixture
def tiny(home, tiny_model_dir):
    return register_folder(home, tiny_model_dir("llama"), name="tiny-llama")


def test_selftest_runs_end_to_end(home, consumer, tiny):
    consumer()
    job = submit(home, "selftest", {"model": "tiny-llama", "max_new_tokens": 16})
    done = wait_for(lambda: get_job(home, job.id).status in st.FINAL and get_job(home, job.id), 120, what="job")
    assert done.status == st.SUCCEEDED, done.error
    assert done.progress == 1.0 and done.result["tokens"] == 16
    assert done.pid and done.started_at and done.finished_at >= done.started_at
    points = job_metrics(home, job.id)
    assert points and {m.name for m in points} == {"tokens_per_s"}
    assert "succeeded" in log_tail(home, job.id)


def test_bad_params_are_refused_before_anything_is_written(home):
    with pytest.raises(ValueError, match="max_new_tokens"):
        submit(home, "selftest", {"max_new_tokens": 0})
    with pytest.raises(ValueError, match="unknown parameter"):
        submit(home, "selftest", {"tokens": 3})
    with pytest.raises(ValueError, match="unknown job kind"):
        submit(home, "no-such-kind", {})
    assert list_jobs(home) == []


def test_cancel_running_job_then_retry(home, consumer, tiny):
    consumer()
    job = submit(home, "selftest", {"model": "tiny-llama", "max_new_tokens": 4096})
    wait_for(lambda: get_job(home, job.id).progress > 0.01, 120, what="progress rows")
    seen = get_job(home, job.id).progress
    cancel(home, job.id)
    ended = wait_for(lambda: get_job(home, job.id).status in st.FINAL and get_job(home, job.id), 30, what="stop")
    assert ended.status == st.CANCELLED
    assert seen <= ended.progress < 1.0
    again = retry(home, job.id)
    assert again.retry_of == job.id and again.params == job.params
    cancel(home, again.id)


def test_cancel_queued_job_never_runs(home, tiny):
    job = submit(home, "selftest", {"model": "tiny-llama"})
    assert cancel(home, job.id).status == st.CANCELLED
    with pytest.raises(ValueError, match="already cancelled"):
        cancel(home, job.id)


def test_killed_consumer_leaves_job_interrupted_and_retryable(home, consumer, tiny):
    first = consumer()
    job = submit(home, "selftest", {"model": "tiny-llama", "max_new_tokens": 4096})
    wait_for(lambda: get_job(home, job.id).progress > 0.01, 120, what="progress rows")
    worker_pid = get_job(home, job.id).pid
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    # The worker dies with its consumer: no orphan keeps computing.
    wait_for(lambda: not _alive(worker_pid), 10, what="worker to die with the consumer")
    assert get_job(home, job.id).status == st.RUNNING  # nobody has looked yet
    consumer()
    interrupted = wait_for(lambda: get_job(home, job.id).status == st.INTERRUPTED and get_job(home, job.id), 30,
                           what="interrupted mark")
    assert "retry" in interrupted.message
    again = retry(home, job.id)
    cancel(home, again.id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purposes
        return f.read().split()[2] != "Z"


def test_gpu_jobs_take_slots_in_order(home):
    from app.db import session
    from app.tables import Job

    with session(home) as s:
        jobs = [Job(kind="selftest", gpus=1, status=st.WAITING) for _ in range(3)]
        s.add_all(jobs)
    a, b, c = (j.id for j in jobs)
    assert _claim_gpus(home, b, 1, per_gpu=1, n_gpus=1) is None  # a is older and still waiting
    assert _claim_gpus(home, a, 1, per_gpu=1, n_gpus=1) == [0]
    assert _claim_gpus(home, b, 1, per_gpu=1, n_gpus=1) is None  # GPU 0 is busy
    assert _claim_gpus(home, b, 1, per_gpu=1, n_gpus=2) == [1]  # a second GPU has room
    assert _claim_gpus(home, c, 1, per_gpu=2, n_gpus=2) in ([0], [1])
    assert get_job(home, a).status == st.RUNNING and get_job(home, a).gpu_indices == "0"


def test_multi_gpu_job_takes_all_its_gpus_at_once(home):
    from app.db import session
    from app.tables import Job

    with session(home) as s:
        one, four, two = Job(kind="finetune", gpus=1, status=st.WAITING), \
            Job(kind="finetune", gpus=4, status=st.WAITING), Job(kind="finetune", gpus=2, status=st.WAITING)
        s.add_all([one, four, two])
    assert _claim_gpus(home, one.id, 1, per_gpu=1, n_gpus=4) == [0]
    assert _claim_gpus(home, four.id, 4, per_gpu=1, n_gpus=4) is None  # only 3 free: it waits, holding none
    assert _claim_gpus(home, two.id, 2, per_gpu=1, n_gpus=4) is None  # and nobody jumps the queue
    assert _claim_gpus(home, four.id, 4, per_gpu=1, n_gpus=8) == [1, 2, 3, 4]  # fewest-used GPUs first
    assert _claim_gpus(home, two.id, 2, per_gpu=1, n_gpus=8) == [5, 6]
    assert get_job(home, four.id).gpu_indices == "1,2,3,4"


def test_one_consumer_per_data_dir_seen_however_it_was_started(home, consumer, tmp_path):
    from jobs.consumer import consumer_pid, consumer_running

    assert not consumer_running(home)
    first = consumer()  # started by hand, not by the launcher
    wait_for(lambda: consumer_pid(home) == first.pid, 30, what="the consumer's lock")
    second = start_consumer(home, tmp_path / "second.log")
    assert second.wait(30) == 2  # it would mark the first one's running jobs interrupted
    assert "already running" in (tmp_path / "second.log").read_text()
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert not consumer_running(home)  # the kernel dropped the lock with the process
