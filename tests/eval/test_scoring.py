"""Answer extraction, metrics with lm-eval's definitions, pass@k, CircularEval and group aggregation, on
hand-made cases whose answers are known."""

from __future__ import annotations

import math

import pytest

from engine.eval import extract as ex
from engine.eval.metrics import choice_scores, mean_stderr, pass_at_k
from engine.eval.runner import TaskResult, aggregate_groups, score
from engine.eval.task import rotate


@pytest.mark.parametrize("text, kind, expected", [
    ("She has 5 + 3 = 8 apples.\n#### 8", "number", "8"),
    ("So the answer is 1,234.", "number", "1234"),
    ("first 3 then 7.5 and finally $42.", "number", "42"),
    ("no digits here", "number", ""),
    ("Thus $x = \\boxed{\\frac{1}{2}}$.", "boxed", "\\frac{1}{2}"),
    ("The answer is (C).", "letter", "C"),
    ("B. because", "letter", "B"),
    ("Here:\n```python\ndef f():\n    return 1\n```\nDone", "code", "def f():\n    return 1"),
])
def test_extractors(text, kind, expected):
    assert ex.extract(kind, text) == expected


def test_think_block_is_stripped_and_measured():
    answer, n = ex.strip_think("<think>let me see</think> The answer is 4")
    assert answer == "The answer is 4" and n == len("let me see")
    assert ex.strip_think("reasoning only</think>7") == ("7", len("reasoning only"))


def test_correctness_rules():
    assert ex.is_correct("number", "18", "18.0") and not ex.is_correct("number", "", "0")
    assert ex.is_correct("boxed", "\\dfrac{1}{2}", "\\frac{1}{2}")
    assert ex.is_correct("boxed", "\\left( 3, \\frac{\\pi}{2} \\right)", "\\left(3,\\frac{\\pi}{2}\\right)")


def test_acc_and_length_normalized_acc_norm():
    # Option 1 has the best raw log-likelihood; option 0 the best per character.
    scores = choice_scores([-4.0, -3.0], ["a long answer", "b"], gold=0)
    assert scores == {"acc": 0.0, "acc_norm": 1.0}


def test_stderr_of_binary_mean_is_lm_eval_formula():
    values = [1.0] * 30 + [0.0] * 70
    p = 0.3
    assert mean_stderr(values) == pytest.approx(math.sqrt(p * (1 - p) / 99))


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - math.comb(4, 2) / math.comb(5, 2))
    assert pass_at_k(4, 3, 2) == 1.0


def test_rotation_moves_the_answer_with_its_option():
    doc = {"question": "q", "choices": ["w", "x", "y", "z"], "gold": 1}
    for shift in range(4):
        r = rotate(doc, shift)
        assert r["choices"][r["gold"]] == "x" and r["rotation"] == shift


def test_circular_scores_origin_and_all_rotations():
    samples = [{"doc_id": "1", "rotation": r, "correct": True} for r in range(4)]
    samples += [{"doc_id": "2", "rotation": 0, "correct": True}, {"doc_id": "2", "rotation": 1, "correct": False}]
    metrics = score(samples, circular=True)
    assert metrics["acc_origin"]["value"] == 1.0
    assert metrics["perf_circular"]["value"] == 0.5 and metrics["perf_circular"]["n"] == 2


def test_pass_at_k_from_samples_and_group_is_item_weighted():
    samples = [{"doc_id": "a", "n": 4, "n_correct": 2, "correct": True, "outcome": "pass"},
               {"doc_id": "b", "n": 4, "n_correct": 0, "correct": False, "outcome": "fail"}]
    metrics = score(samples, circular=False)
    assert metrics["pass@1"]["value"] == pytest.approx(0.25) and "pass@4" in metrics
    one = TaskResult("mmlu_a", "mmlu", "", {"acc": {"value": 1.0, "stderr": 0.0, "n": 1}})
    three = TaskResult("mmlu_b", "mmlu", "", {"acc": {"value": 0.0, "stderr": 0.0, "n": 3}})
    assert aggregate_groups([one, three])["mmlu"]["acc"]["value"] == pytest.approx(0.25)
