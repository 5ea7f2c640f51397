"""Execute generated code against its tests (HumanEval, MBPP) in the sandbox: pass, fail, timeout or error.

Modelled on the execution module of nanochat / OpenAI's human-eval, with one difference that matters: the
program runs in `engine.sandbox` (its own process tree, no network, a throw-away workspace as its only
writable place, CPU/memory/process limits), not in a forked interpreter with dangerous builtins switched off.
`run_many` runs a batch with at most `workers` sandboxes alive at once.

Statuses: 'pass' (the program ran to its end), 'fail' (an assertion of the tests failed), 'timeout' (wall
clock or CPU limit), 'error' (any other exception, a syntax error, the memory limit, a crash).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from engine.sandbox import Limits, Outcome, run_program

# Tests of one code problem need little: a small address space, few processes, a short CPU budget.
TEST_LIMITS = Limits(cpu_s=10, memory_mb=512, processes=16, file_size_mb=16, output_bytes=20_000)


@dataclass
class ExecutionResult:
    """The verdict on one program and what the sandbox saw."""

    status: str
    """'pass', 'fail', 'timeout' or 'error'."""
    message: str
    """Empty on pass; otherwise the failing line: 'AssertionError: ...', 'timed out after 10 s', ..."""
    outcome: Outcome
    """The sandbox's record: stdout, stderr (the full traceback), duration, exit code, isolation."""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The program HumanEval runs: the prompt, the model's completion, the test code, `check(entry_point)`."""
    return f"{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n"


def mbpp_program(code: str, tests: Sequence[str], setup: str = "") -> str:
    """The program MBPP runs: optional setup code, the model's code, then each assert line."""
    parts = [setup, code, *tests]
    return "\n".join(part for part in parts if part) + "\n"


def verdict(outcome: Outcome) -> ExecutionResult:
    if outcome.status == "ok":
        return ExecutionResult("pass", "", outcome)
    if outcome.status == "timeout" or outcome.reason.startswith("CPU time limit"):
        return ExecutionResult("timeout", outcome.reason, outcome)
    line = outcome.error_line
    if outcome.status == "error" and line.startswith("AssertionError"):
        return ExecutionResult("fail", line, outcome)
    return ExecutionResult("error", line or outcome.reason, outcome)


def run_tests(program: str, *, timeout_s: float = 10.0, limits: Limits = TEST_LIMITS) -> ExecutionResult:
    """Run one program (candidate code plus its tests, see humaneval_program / mbpp_program) and judge it."""
    return verdict(run_program(program, timeout_s=timeout_s, limits=limits))


def run_many(
    programs: Sequence[str],
    *,
    workers: int | None = None,
    timeout_s: float = 10.0,
    limits: Limits = TEST_LIMITS,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[ExecutionResult | None]:
    """Judge many programs, at most `workers` (default: CPU count, at most 8) sandboxes at once, results in order.

    `progress(done, total)` is called after each program. When `cancel` is set, no new program starts and the
    ones that never ran are None in the result.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    results: list[ExecutionResult | None] = [None] * len(programs)
    pending = iter(enumerate(programs))
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        running = {}

        def submit_next() -> bool:
            if cancel is not None and cancel.is_set():
                return False
            item = next(pending, None)
            if item is None:
                return False
            index, program = item
            running[pool.submit(run_tests, program, timeout_s=timeout_s, limits=limits)] = index
            return True

        for _ in range(workers):
            if not submit_next():
                break
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                results[running.pop(future)] = future.result()
                done += 1
                if progress is not None:
                    progress(done, len(programs))
                submit_next()
    return results
