"""engine.eval.execution on tiny HumanEval- and MBPP-style problems with known verdicts."""

from __future__ import annotations

import threading

from engine.eval.execution import humaneval_program, mbpp_program, run_many, run_tests

PROMPT = 'def add(a, b):\n    """Return the sum of a and b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def humaneval(completion: str) -> str:
    return humaneval_program(PROMPT, completion, TEST, "add")


def test_humaneval_verdicts():
    assert run_tests(humaneval("    return a + b\n"), timeout_s=30).status == "pass"
    wrong = run_tests(humaneval("    return a - b\n"), timeout_s=30)
    assert (wrong.status, wrong.message) == ("fail", "AssertionError")
    assert "candidate(2, 3) == 5" in wrong.outcome.stderr
    broken = run_tests(humaneval("    return a +\n"), timeout_s=30)
    assert broken.status == "error" and broken.message.startswith("SyntaxError")
    crash = run_tests(humaneval("    return a + undefined_name\n"), timeout_s=30)
    assert (crash.status, crash.message) == ("error", "NameError: name 'undefined_name' is not defined")
    hang = run_tests(humaneval("    while True:\n        pass\n"), timeout_s=1.0)
    assert (hang.status, hang.message) == ("timeout", "timed out after 1 s")


def test_mbpp_verdicts_with_setup_code():
    tests = ["assert square(3) == 9", "assert square(-2) == SIGN * 4"]
    assert run_tests(mbpp_program("def square(x):\n    return x * x", tests, setup="SIGN = 1"), timeout_s=30).passed
    wrong = run_tests(mbpp_program("def square(x):\n    return x + x", tests, setup="SIGN = 1"), timeout_s=30)
    assert wrong.status == "fail"


def test_run_many_keeps_order_and_reports_progress():
    programs = [
        humaneval("    return a + b\n"),
        humaneval("    return a * b\n"),
        humaneval("    while True:\n        pass\n"),
        mbpp_program("x = 1", ["assert x == 1"]),
    ]
    seen = []
    results = run_many(programs, workers=2, timeout_s=2.0, progress=lambda done, total: seen.append((done, total)))
    assert [r.status for r in results] == ["pass", "fail", "timeout", "pass"]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_run_many_stops_starting_programs_once_cancelled():
    cancel = threading.Event()
    programs = [mbpp_program("x = 1", ["assert x == 1"])] * 5
    results = run_many(programs, workers=1, timeout_s=30, progress=lambda done, total: cancel.set(), cancel=cancel)
    assert results[0].passed and results[1:] == [None] * 4
