"""Data-parallel evaluation: N engine processes score like one, and a cancel, a dead worker or a killed parent
leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from engine.eval.backends import GenParams, folder_identity
from engine.eval.parallel import ParallelBackend, WorkerFailed, plan_workers, split_by_context
from engine.progress import Cancelled
from tests.helpers import REPO, wait_for

pytest.importorskip("torch")


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_context_group_stays_on_one_worker_and_the_shares_are_balanced():
    pairs = [(f"shots + question {q}", f" {letter}") for q in range(10) for letter in "ABCD"]
    shards = split_by_context(pairs, 3)
    assert sorted(i for s in shards for i in s) == list(range(40))
    for shard in shards:
        contexts = {pairs[i][0] for i in shard}
        assert all(sum(pairs[i][0] == c for i in shard) == 4 for c in contexts)  # whole groups only
        assert shard == sorted(shard)  # neighbours together: they share a few-shot prefix
    assert sorted(len(s) for s in shards) == [12, 12, 16]
    assert split_by_context(pairs[:4], 3) == [[], [0, 1, 2, 3], []]  # one group: one worker, the others idle


def test_workers_go_one_per_gpu_or_share_the_cpu(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    cpu = plan_workers(2, "cpu")
    assert [(p.device, p.threads, p.env["CUDA_VISIBLE_DEVICES"]) for p in cpu] == [("cpu", 4, ""), ("cpu", 4, "")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpus = plan_workers(2, "auto", gpu_count=2)
    assert [(p.device, p.env["CUDA_VISIBLE_DEVICES"]) for p in gpus] == [("cuda", "3"), ("cuda", "5")]
    assert plan_workers(2, "auto", gpu_count=1)[0].device == "cpu"
    with pytest.raises(ValueError, match="workers: 4 GPU workers"):
        plan_workers(4, "cuda", gpu_count=2)
    with pytest.raises(ValueError, match="device: cuda:1"):
        plan_workers(2, "cuda:1")
    with pytest.raises(ValueError, match="workers: must be >= 1"):
        plan_workers(0, "cpu")


@pytest.mark.slow
def test_two_workers_score_like_one(bundled_model_dir):
    """The same tasks through one engine in this process and through two worker processes: equal scores, per-item
    log-probs within 1e-4, the same generations, one identity (so one response cache serves both)."""
    from engine.eval.backends import EngineBackend
    from engine.eval.config import EvalConfig
    from engine.eval.runner import Evaluator

    cfg = EvalConfig(model=str(bundled_model_dir), tasks="arc_easy,mmlu_anatomy", shots=2, limit=4,
                     dtype="float32", device="cpu")
    prompts = ["Question: What is 2 + 3?\nAnswer:", "The capital of France is", "Once upon a time"]
    params = GenParams(max_tokens=8, stop=("\n",))
    single = EngineBackend(str(bundled_model_dir), dtype="float32", device="cpu", cpu_kv_cache_gb=0.25)
    one = Evaluator(cfg, single).run()
    one_texts = single.generate(prompts, params)
    with ParallelBackend(str(bundled_model_dir), workers=2, dtype="float32", device="cpu",
                         cpu_kv_cache_gb=0.25) as parallel:
        pids = parallel.pids()
        assert parallel.identity == single.identity == folder_identity(bundled_model_dir, "float32")
        two = Evaluator(cfg, parallel).run()
        assert parallel.generate(prompts, params) == one_texts
        chat = [{"role": "user", "content": "Hi"}]
        assert parallel.render_chat(chat) == single.render_chat(chat)
    for a, b in zip(one["tasks"], two["tasks"], strict=True):
        assert a.task == b.task
        assert {k: v["value"] for k, v in a.metrics.items()} == {k: v["value"] for k, v in b.metrics.items()}
        for sa, sb in zip(a.samples, b.samples, strict=True):
            assert sa["doc_id"] == sb["doc_id"]
            assert sb["logprobs"] == pytest.approx(sa["logprobs"], abs=1e-4)
    wait_for(lambda: all(_gone(p) for p in pids), timeout=30, what="the workers to end after close()")


def _many_pairs(n: int) -> list[tuple[str, str]]:
    shots = "".join(f"Question: what is {i} times {i}?\nAnswer: {i * i}\n\n" for i in range(20))
    return [(shots + f"Question: what is {q} plus {q}?\nAnswer:", f" {o} and some more words")
            for q in range(n) for o in range(4)]


@pytest.mark.slow
def test_cancel_stops_the_workers_promptly(tiny_model_dir):
    backend = ParallelBackend(str(tiny_model_dir("llama")), workers=2, dtype="float32", device="cpu",
                              cpu_kv_cache_gb=0.25)
    pids = backend.pids()
    cancel = threading.Event()
    started = threading.Event()
    outcome = {}

    def score():
        try:
            backend.loglikelihood(_many_pairs(800), progress=lambda **_: started.set(), cancel=cancel)
        except BaseException as e:  # noqa: BLE001 - the test looks at what it was
            outcome["error"] = e
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=score)
    thread.start()
    assert started.wait(120), "the workers never reported progress"
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(60)
    assert isinstance(outcome.get("error"), Cancelled)
    assert outcome["at"] - cancelled_at < 15
    wait_for(lambda: all(_gone(p) for p in pids), timeout=15, what="the workers to end after the cancel")
    with pytest.raises(RuntimeError, match="closed"):
        backend.loglikelihood([("a", " b")])


def test_a_killed_worker_is_named_and_the_others_end(tiny_model_dir):
    backend = ParallelBackend(str(tiny_model_dir("llama")), workers=2, dtype="float32", device="cpu",
                              cpu_kv_cache_gb=0.25)
    pids = backend.pids()
    assert backend.loglikelihood([("Question: 1 + 1?\nAnswer:", " 2"), ("Hello", " world")])
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(WorkerFailed, match=rf"eval worker 1 \(pid {pids[1]}, cpu\) was killed by SIGKILL"):
        backend.loglikelihood(_many_pairs(50))
    wait_for(lambda: all(_gone(p) for p in pids), timeout=15, what="the other worker to end")


PARENT = """
import sys, time
from engine.eval.parallel import ParallelBackend
backend = ParallelBackend(sys.argv[1], workers=2, dtype="float32", device="cpu", cpu_kv_cache_gb=0.25)
print(*backend.pids(), flush=True)
time.sleep(600)
"""


def test_workers_die_with_a_killed_parent(tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tiny_model_dir("llama"))], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
    finally:
        parent.kill()
        parent.wait(30)
    wait_for(lambda: all(_gone(p) for p in pids), timeout=30, what="the workers to die with their parent")
