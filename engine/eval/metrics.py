"""Scores and their standard errors, with lm-evaluation-harness's definitions so numbers compare.

acc: the option with the highest summed log-likelihood is the gold one. acc_norm: the same after dividing each
option's log-likelihood by its length in characters (lm-eval's `len(choice)`, which for ASCII is its byte
length). Standard error of a mean of per-item scores: sample standard deviation / sqrt(n), which for 0/1 scores
is sqrt(p(1-p)/(n-1)). pass@k: the unbiased estimator of Chen et al. (2021) from n samples with c correct.
"""

from __future__ import annotations

import math


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def choice_scores(logprobs: list[float], choices: list[str], gold: int) -> dict[str, float]:
    lengths = [max(1, len(c)) for c in choices]
    normed = [lp / n for lp, n in zip(logprobs, lengths, strict=True)]
    return {"acc": float(argmax(logprobs) == gold), "acc_norm": float(argmax(normed) == gold)}


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def mean_stderr(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return float("nan")
    mu = mean(values)
    variance = sum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def summarize(per_item: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """{metric: {"value", "stderr", "n"}} from per-item scores."""
    return {name: {"value": mean(v), "stderr": mean_stderr(v), "n": len(v)} for name, v in per_item.items()}
