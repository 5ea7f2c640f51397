"""PPL scoring on our engine equals a plain HF forward, while the shared context is computed once."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from engine.eval.backends import EngineBackend  # noqa: E402
from engine.eval.loglik import encode_pair  # noqa: E402


def hf_loglik(model, tokenizer, context: str, continuation: str) -> tuple[float, bool]:
    ctx, cont = encode_pair(tokenizer, context, continuation, tokenizer.bos_token_id)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = model(ids).logits[0].float().log_softmax(-1)
    rows = logprobs[len(ctx) - 1:len(ctx) - 1 + len(cont)]
    target = torch.tensor(cont)
    return float(rows.gather(1, target[:, None]).sum()), bool((rows.argmax(-1) == target).all())


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_model_dir("llama")
    return folder, AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), AutoTokenizer.from_pretrained(
        folder)


def test_loglikelihoods_match_hf_and_reuse_the_shared_prefix(tiny):
    folder, model, tokenizer = tiny
    shots = "".join(f"Question: what is {i} plus {i}?\nAnswer: {2 * i}\n\n" for i in range(12))
    pairs = []
    for q in ("What colour is the sky?", "Which is heavier, iron or air?"):
        context = shots + f"Question: {q}\nAnswer:"
        pairs += [(context, " blue"), (context, " a rather long option text here"), (context, " 7")]
    pairs.append(("单词", " 中文的延续"))  # a context with no shared prefix, Chinese
    backend = EngineBackend(str(folder), dtype="float32", device="cpu", cpu_kv_cache_gb=0.05)
    got = backend.loglikelihood(pairs)
    for (context, continuation), (lp, greedy) in zip(pairs, got, strict=True):
        ref_lp, ref_greedy = hf_loglik(model, tokenizer, context, continuation)
        assert lp == pytest.approx(ref_lp, abs=2e-3)
        assert greedy == ref_greedy
    stats = backend._scorer.stats
    # Two options of each question and the second question's shots came from the prefix cache.
    assert stats["tokens_computed"] < 0.45 * stats["tokens"]


def test_trailing_space_moves_to_continuation(tiny):
    _, _, tokenizer = tiny
    a = encode_pair(tokenizer, "Answer: ", "yes", None)
    b = encode_pair(tokenizer, "Answer:", " yes", None)
    assert a == b


def test_one_token_followers_come_from_the_leader_with_the_same_logprobs(tiny):
    """MMLU's " A" ... " D" options are answered from the leader's last context position instead of being run."""
    from engine.eval.loglik import LoglikScorer
    from engine.progress import Cancelled

    folder, _, tokenizer = tiny
    shots = "".join(f"Question: what is {i} times {i}?\nA. {i}\nB. {i * i}\nAnswer: B\n\n" for i in range(8))
    pairs = []
    for q in ("What colour is the sky?", "Which is heavier, iron or air?", "Pick a prime."):
        context = shots + f"Question: {q}\nA. one\nB. two\nC. three\nD. four\nAnswer:"
        pairs += [(context, f" {letter}") for letter in "ABCD"]
        pairs.append((context, " a longer free-text option"))  # a follower that still runs, after its first token
    assert all(len(encode_pair(tokenizer, c, o, None)[1]) == 1 for c, o in pairs if len(o) == 2)
    backend = EngineBackend(str(folder), dtype="float32", device="cpu", cpu_kv_cache_gb=0.05)
    fast = LoglikScorer(backend.engine)
    got = fast.score(pairs)
    # A fresh engine state for the reference: nothing cached from the run above.
    backend.engine.block_manager.hash_to_block.clear()
    slow = LoglikScorer(backend.engine, shortcut=False)
    want = slow.score(pairs)
    for (lp, greedy), (ref_lp, ref_greedy) in zip(got, want, strict=True):
        assert lp == pytest.approx(ref_lp, abs=1e-5)
        assert greedy == ref_greedy
    # One sequence for the four letters of a question, one for the long option: 2 per question, not 5.
    assert fast.stats["sequences"] == 2 * 3
    assert slow.stats["sequences"] == 5 * 3

    # The same pairs again: their blocks are cached now, yet every continuation position is scored again
    # (a cached block has no logits; taking the ones past the context would drop the long option's tokens).
    assert [lp for lp, _ in fast.score(pairs)] == pytest.approx([lp for lp, _ in want], abs=1e-5)

    # A cancel mid-score leaves the engine empty, so the next score on it runs and agrees.
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        fast.score([(c + " again", o) for c, o in pairs], progress=lambda **_: cancel.set(), cancel=cancel)
    assert not backend.engine.scheduler.running and not backend.engine.scheduler.waiting
    again = fast.score(pairs)
    assert [lp for lp, _ in again] == pytest.approx([lp for lp, _ in want], abs=1e-5)
