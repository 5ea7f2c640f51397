"""The sampler on its own, against HF's logits processors and small torch references."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.infer.layers.sampler import Sampler, _warp, apply_penalties
from engine.infer.sampling_params import SamplingParams

VOCAB = 50


def logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed)) * 3


def sample(x: torch.Tensor, params: list[SamplingParams], history=None, num_prompt=None, generators=None):
    rows = len(params)
    return Sampler()(x, params, history or [[] for _ in range(rows)], num_prompt or [0] * rows,
                     generators or [None] * rows)


def test_greedy_and_top_k_1_pick_the_argmax():
    x = logits(8)
    greedy = sample(x, [SamplingParams(temperature=0)] * 8).token_ids
    top1 = sample(x, [SamplingParams(temperature=1.5, top_k=1)] * 8).token_ids
    assert greedy == top1 == x.argmax(-1).tolist()


def test_same_seed_same_tokens_regardless_of_batch():
    x = logits(4)
    p = SamplingParams(temperature=1.0, seed=1234)

    def draws(rows: int) -> list[int]:
        gen = torch.Generator().manual_seed(1234)
        others = [SamplingParams(temperature=1.0)] * (rows - 1)
        return [sample(x[:rows], [p, *others], generators=[gen] + [None] * (rows - 1)).token_ids[0]
                for _ in range(20)]

    assert draws(1) == draws(4)
    other = torch.Generator().manual_seed(99)
    assert draws(1) != [sample(x[:1], [p], generators=[other]).token_ids[0] for _ in range(20)]


def test_draws_follow_the_softmax_distribution():
    x = torch.tensor([[0.0, 1.0, 2.0, -1.0]])
    probs = x.softmax(-1)[0]
    gen = torch.Generator().manual_seed(0)
    params = [SamplingParams(temperature=1.0)]
    counts = torch.zeros(4)
    for _ in range(3000):
        counts[sample(x, params, generators=[gen]).token_ids[0]] += 1
    # Within 4 standard errors of the expected frequency.
    assert torch.all((counts / 3000 - probs).abs() < 4 * torch.sqrt(probs * (1 - probs) / 3000))


@pytest.mark.parametrize("kwargs,hf", [
    (dict(temperature=0.7, top_k=5), [TemperatureLogitsWarper(0.7), TopKLogitsWarper(5)]),
    (dict(temperature=1.3, top_p=0.8), [TemperatureLogitsWarper(1.3), TopPLogitsWarper(0.8)]),
    (dict(temperature=1.0, min_p=0.1), [MinPLogitsWarper(0.1)]),
    (dict(temperature=0.9, top_k=10, top_p=0.9, min_p=0.05),
     [TemperatureLogitsWarper(0.9), TopKLogitsWarper(10), TopPLogitsWarper(0.9), MinPLogitsWarper(0.05)]),
])
def test_filters_match_hf_warpers(kwargs, hf):
    x = logits(6, seed=3)
    ours = _warp(x, [SamplingParams(**kwargs)] * 6)
    ids = torch.zeros(6, 1, dtype=torch.long)
    expected = x.clone()
    for warper in hf:
        expected = warper(ids, expected)
    torch.testing.assert_close(ours, expected.softmax(-1), atol=1e-6, rtol=1e-5)


def test_rows_keep_their_own_filters():
    x = logits(2, seed=5)
    ours = _warp(x, [SamplingParams(top_k=3), SamplingParams(top_p=1.0)])
    assert int((ours[0] > 0).sum()) == 3 and int((ours[1] > 0).sum()) == VOCAB


def test_repetition_penalty_matches_hf():
    x = logits(3, seed=7)
    history = [[1, 2, 3, 3, 10], [4, 5], [6]]
    ours = apply_penalties(x, [SamplingParams(repetition_penalty=1.3)] * 3, history, [2, 1, 1])
    for row in range(3):
        ids = torch.tensor([history[row]])
        expected = RepetitionPenaltyLogitsProcessor(1.3)(ids, x[row:row + 1].clone())
        torch.testing.assert_close(ours[row:row + 1], expected)


def test_frequency_and_presence_penalties_follow_openai():
    x = logits(2, seed=8)
    history = [[9, 9, 1, 1, 1, 2], [3, 4]]
    params = [SamplingParams(frequency_penalty=0.5, presence_penalty=0.25), SamplingParams()]
    ours = apply_penalties(x, params, history, [2, 2])
    expected = x.clone()
    # Output tokens of row 0 are [1, 1, 1, 2]; the prompt tokens [9, 9] are not penalised.
    for token, count in {1: 3, 2: 1}.items():
        expected[0, token] -= 0.5 * count + 0.25
    torch.testing.assert_close(ours, expected)


def test_logprobs_are_raw_log_softmax_with_sorted_top_k():
    x = logits(3, seed=9)
    params = [SamplingParams(temperature=0, logprobs=4, repetition_penalty=2.0), SamplingParams(temperature=0),
              SamplingParams(temperature=0, logprobs=0)]
    out = sample(x, params, history=[[0], [], []], num_prompt=[1, 0, 0])
    reference = x.log_softmax(-1)
    entry = out.logprobs[0]
    assert entry.token_id == out.token_ids[0]
    assert math.isclose(entry.logprob, reference[0, entry.token_id].item(), rel_tol=1e-5)
    assert [t for t, _ in entry.top] == reference[0].topk(4).indices.tolist()
    assert all(a[1] >= b[1] for a, b in zip(entry.top, entry.top[1:], strict=False))
    assert out.logprobs[1] is None and out.logprobs[2].top == []


def test_non_finite_rows_get_an_error_and_the_others_are_untouched():
    x = logits(3, seed=10)
    x[1, 4] = float("nan")
    x[2, 0] = float("inf")
    out = sample(x, [SamplingParams(temperature=0)] * 3)
    assert out.errors == [None, "non-finite logits", "non-finite logits"]
    assert out.token_ids[0] == x[0].argmax().item()
