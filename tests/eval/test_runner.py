"""The runner end to end on the bundled model (PPL equals a plain HF forward's choice; generation extracts and
scores), on code with known programs run in the real sandbox, and resuming from the response cache."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from engine.eval.backends import EngineBackend, GenParams  # noqa: E402
from engine.eval.config import EvalConfig  # noqa: E402
from engine.eval.runner import Evaluator, MemoryCache  # noqa: E402
from engine.progress import Cancelled  # noqa: E402


@pytest.fixture(scope="module")
def backend(bundled_model_dir):
    return EngineBackend(str(bundled_model_dir), dtype="float32", device="cpu", cpu_kv_cache_gb=0.25)


class Counting:
    """A real backend that counts what reaches the model."""

    def __init__(self, inner, cancel_after: int | None = None, cancel: threading.Event | None = None):
        self.inner, self.identity, self.pairs, self.calls = inner, inner.identity, 0, 0
        self.cancel_after, self.cancel = cancel_after, cancel

    def render_chat(self, messages):
        return self.inner.render_chat(messages)

    def loglikelihood(self, pairs, progress=None, cancel=None):
        self.pairs += len(pairs)
        self.calls += 1
        if self.cancel_after is not None and self.calls > self.cancel_after:
            self.cancel.set()
        return self.inner.loglikelihood(pairs)

    def generate(self, prompts, params, progress=None, cancel=None):
        return self.inner.generate(prompts, params)


def test_ppl_choice_matches_hf_forward_and_rerun_comes_from_cache(backend, bundled_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.eval.test_loglik import hf_loglik

    cfg = EvalConfig(model="bundled", tasks="arc_easy", split="validation", limit=6, dtype="float32")
    cache = MemoryCache()
    counting = Counting(backend)
    run = Evaluator(cfg, counting, cache).run()
    [result] = run["tasks"]
    assert result.metrics["acc"]["n"] == 6 and set(result.metrics) == {"acc", "acc_norm"}
    hf = AutoModelForCausalLM.from_pretrained(bundled_model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(bundled_model_dir)
    for sample in result.samples[:3]:
        ctx = sample["prompt"]
        ref = [hf_loglik(hf, tok, ctx, cont)[0] for cont in [" " + c for c in _choices(sample, cfg)]]
        assert max(range(len(ref)), key=ref.__getitem__) == "ABCDE".index(sample["extracted"])
        assert sample["logprobs"] == pytest.approx(ref, abs=2e-3)
    asked = counting.pairs
    again = Evaluator(cfg, counting, cache).run()
    assert counting.pairs == asked  # everything came from the cache
    assert again["tasks"][0].metrics == result.metrics


def _choices(sample, cfg):
    from engine.eval.tasks import get_task

    task = get_task("arc_easy")
    doc = next(d for d in task.docs(cfg.split) if d["id"] == sample["doc_id"])
    return doc["choices"]


def test_cancelled_run_keeps_finished_chunks_and_resumes(backend, monkeypatch):
    import engine.eval.runner as runner

    monkeypatch.setattr(runner, "CHUNK", 8)
    cfg = EvalConfig(model="bundled", tasks="piqa", limit=12, dtype="float32")
    cache, cancel = MemoryCache(), threading.Event()
    first = Counting(backend, cancel_after=1, cancel=cancel)
    with pytest.raises(Cancelled):
        Evaluator(cfg, first, cache, cancel=cancel).run()
    assert len(cache.data) == 16  # two chunks of 8 finished before the cancel was seen
    second = Counting(backend)
    run = Evaluator(cfg, second, cache).run()
    assert second.pairs == 24 - 16 and run["tasks"][0].metrics["acc"]["n"] == 12


def test_circular_ppl_on_mmlu_reports_origin_and_circular(backend):
    cfg = EvalConfig(model="bundled", tasks="mmlu_anatomy", shots=1, circular=True, limit=3, dtype="float32")
    [result] = Evaluator(cfg, backend).run()["tasks"]
    assert set(result.metrics) == {"acc_origin", "perf_circular"}
    assert result.metrics["perf_circular"]["value"] <= result.metrics["acc_origin"]["value"]
    assert len(result.samples) == 12 and {s["rotation"] for s in result.samples} == {0, 1, 2, 3}


def test_generation_gsm8k_extracts_numbers_and_never_crashes(backend):
    cfg = EvalConfig(model="bundled", tasks="gsm8k", mode="gen", shots=2, limit=2, max_tokens=24)
    [result] = Evaluator(cfg, backend).run()["tasks"]
    assert result.metrics["exact_match"]["n"] == 2
    for s in result.samples:
        assert s["answer"] and s["gold"] and "think_len" in s and "Question:" not in s["answer"]


class KnownPrograms:
    """Stands in for a model whose answers are known: the canonical solution, a wrong one, a hang, garbage."""

    identity = "known-programs"

    def __init__(self, answers):
        self.answers = answers

    def render_chat(self, messages):
        raise AssertionError("not used")

    def loglikelihood(self, pairs, progress=None, cancel=None):
        raise AssertionError("not used")

    def generate(self, prompts, params: GenParams, progress=None, cancel=None):
        return [self.answers[:params.n] for _ in prompts]


def test_humaneval_programs_run_in_the_sandbox(monkeypatch):
    import engine.eval.runner as runner
    from engine.eval.tasks import get_task

    doc = get_task("humaneval").docs("test")[0]
    cfg = EvalConfig(model="known", tasks="humaneval", mode="gen", limit=1, samples=4, temperature=0.8)
    answers = [doc["answer"], "    return False\n", "    while True:\n        pass\n", "garbage ((("]
    monkeypatch.setattr(runner, "PROGRAM_TIMEOUT_S", 3.0)
    evaluator = Evaluator(cfg, KnownPrograms(answers))
    [result] = evaluator.run()["tasks"]
    [sample] = result.samples
    assert [o["outcome"] for o in sample["outcomes"]] == ["pass", "fail", "timeout", "error"]
    assert result.metrics["pass@1"]["value"] == pytest.approx(0.25)
    assert result.metrics["pass@4"]["value"] == 1.0


def test_mbpp_canonical_code_passes():
    from engine.eval.tasks import get_task

    doc = get_task("mbpp").docs("test")[0]
    cfg = EvalConfig(model="known", tasks="mbpp", mode="gen", limit=1)
    evaluator = Evaluator(cfg, KnownPrograms([f"```python\n{doc['answer']}\n```"]))
    [result] = evaluator.run()["tasks"]
    assert result.metrics["pass@1"]["value"] == 1.0 and result.samples[0]["outcome"] == "pass"
