"""PPL scoring of a GGUF through llama.cpp agrees with our engine on the HF folder it was exported from.

A float32 export computes the same function as the HF model, so log-likelihoods must agree closely and an
ARC-Easy run must pick the same options; each context is evaluated once and shared by its options through
llama.cpp's KV cache, whatever order the pairs come in.
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("llama_cpp")

from engine.eval.backends import EngineBackend, GenParams  # noqa: E402

SHOTS = "".join(f"Question: what is {i} plus {i}?\nAnswer: {2 * i}\n\n" for i in range(12))


def _pairs() -> list[tuple[str, str]]:
    pairs = []
    for q in ("What colour is the sky?", "Which is heavier, iron or air?"):
        context = SHOTS + f"Question: {q}\nAnswer:"
        pairs += [(context, " blue"), (context, " a rather long option text here"), (context, " 7")]
    pairs.append(("单词", " 中文的延续"))  # no prefix shared with the rest, Chinese
    pairs.append(("Answer: ", "yes"))  # a trailing space moves to the continuation
    pairs.append(("", "An empty context starts at the BOS token"))
    return pairs


def _one_thread(backend: EngineBackend) -> EngineBackend:
    """llama.cpp on one thread: on a shared, oversubscribed test machine its spinning threads slow down ~10x."""
    import llama_cpp

    llama_cpp.llama_set_n_threads(backend.engine.runner.llm.ctx, 1, 1)
    return backend


def _export(folder, out, quant: str):
    from engine.export.quant_types import QUANT_TYPES
    from engine.export.writer import write_gguf

    return write_gguf(folder, out, QUANT_TYPES[quant], name=out.stem)


@pytest.fixture(scope="module")
def tiny_pair(tiny_model_dir, tmp_path_factory):
    folder = tiny_model_dir("mistral")
    gguf = _export(folder, tmp_path_factory.mktemp("tiny-gguf") / "tiny.F32.gguf", "f32")
    return (EngineBackend(str(folder), dtype="float32", device="cpu", cpu_kv_cache_gb=0.05),
            _one_thread(EngineBackend(str(gguf), device="cpu", max_model_len=1024)))


def test_gguf_loglikelihoods_match_the_hf_engine_and_share_each_context(tiny_pair):
    hf, gguf = tiny_pair
    pairs = _pairs()
    want = hf.loglikelihood(pairs)
    got = gguf.loglikelihood(pairs)
    for pair, (lp, greedy), (ref_lp, ref_greedy) in zip(pairs, got, want, strict=True):
        assert lp == pytest.approx(ref_lp, abs=2e-3), pair
        assert greedy == ref_greedy, pair
    stats = gguf._scorer.stats
    # The second and third options of each question, and the second question's shots, came from the KV cache.
    assert stats["tokens_computed"] < 0.45 * stats["tokens"]


def test_any_order_and_a_second_call_give_the_same_scores(tiny_pair):
    _, gguf = tiny_pair
    pairs = _pairs()
    first = gguf.loglikelihood(pairs)
    order = list(range(len(pairs)))
    random.Random(7).shuffle(order)
    shuffled = gguf.loglikelihood([pairs[i] for i in order])
    for k, i in enumerate(order):
        assert shuffled[k][0] == pytest.approx(first[i][0], abs=1e-4)
        assert shuffled[k][1] == first[i][1]
    # The runner's record of what the context holds stayed true: generation after scoring still works.
    [[text]] = gguf.generate(["Question: what is 3 plus 3?\nAnswer:"], GenParams(max_tokens=4))
    assert isinstance(text, str)
    llm = gguf.engine.runner.llm
    assert llm.n_tokens > 0


def test_a_continuation_that_does_not_encode_is_refused(tiny_pair):
    _, gguf = tiny_pair
    with pytest.raises(ValueError, match="continuation: '' encodes to no tokens"):
        gguf.loglikelihood([("Question:", "")])


@pytest.mark.slow
def test_bundled_model_f32_gguf_scores_like_its_hf_folder(bundled_model_dir, tmp_path):
    """The bundled model exported to F32: log-probs within 0.02 nats, and ARC-Easy (ppl, 40 questions) picks
    the same option as the HF folder on every question seen so far (allowed: one near-tie)."""
    from engine.eval.config import EvalConfig
    from engine.eval.runner import Evaluator

    gguf_path = _export(bundled_model_dir, tmp_path / "smol.F32.gguf", "f32")
    hf = EngineBackend(str(bundled_model_dir), dtype="float32", device="cpu", cpu_kv_cache_gb=0.5)
    gguf = _one_thread(EngineBackend(str(gguf_path), device="cpu", max_model_len=2048))
    pairs = _pairs()
    for (lp, _), (ref_lp, _) in zip(gguf.loglikelihood(pairs), hf.loglikelihood(pairs), strict=True):
        assert lp == pytest.approx(ref_lp, abs=0.02)

    cfg = EvalConfig(model="x", tasks="arc_easy", mode="ppl", limit=40, dtype="float32")
    by_backend = [Evaluator(cfg, backend).run()["tasks"][0] for backend in (hf, gguf)]
    answers = [[s["extracted"] for s in result.samples] for result in by_backend]
    differ = sum(a != b for a, b in zip(*answers, strict=True))
    assert differ <= 1, answers
    acc = [result.metrics["acc"]["value"] for result in by_backend]
    assert abs(acc[0] - acc[1]) <= 1 / 40 + 1e-9
