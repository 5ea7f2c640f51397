"""PythonSession, the agents' Python tool: state across cells, values, errors, files, timeouts and restarts."""

from __future__ import annotations

import base64
import threading
import time

import pytest

from engine.sandbox import Limits, PythonSession
from tests.sandbox.conftest import leftovers

GOOD = 30.0
# A 1x1 PNG, written by the cell as bytes so the test needs no imaging library inside the sandbox.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def session(mode, tmp_path):
    with PythonSession(tmp_path / "ws", limits=Limits(cpu_s=5, memory_mb=512)) as py:
        yield py


def test_state_persists_and_the_last_expression_is_returned(session):
    first = session.run("x = 20\nprint('set x')", timeout_s=GOOD)
    assert (first.stdout, first.value, first.error) == ("set x\n", None, None)
    second = session.run("y = x + 1\nx * 2 + y // 21", timeout_s=GOOD)
    assert second.ok and second.value == "41" and second.stdout == ""
    assert session.run("{'中文': [1, 2]}", timeout_s=GOOD).value == "{'中文': [1, 2]}"
    assert session.run("None", timeout_s=GOOD).value is None
    assert session.run("_", timeout_s=GOOD).value == "{'中文': [1, 2]}"


def test_errors_come_back_as_tracebacks_and_the_session_lives_on(session):
    bad = session.run("def f(n):\n    return 10 / n\n\nf(0)", timeout_s=GOOD)
    assert not bad.ok and bad.error_line == "ZeroDivisionError: division by zero"
    assert 'File "<cell 1>", line 4' in bad.error and "return 10 / n" in bad.error
    syntax = session.run("def g(:", timeout_s=GOOD)
    assert syntax.error_line.startswith("SyntaxError")
    assert session.run("f(5)", timeout_s=GOOD).value == "2.0"
    exited = session.run("import sys\nsys.exit(4)", timeout_s=GOOD)
    assert exited.error_line == "SystemExit: 4" and not exited.restarted
    assert session.run("f(4)", timeout_s=GOOD).value == "2.5"


def test_stdout_and_stderr_of_c_level_writes_are_kept_per_cell(session):
    result = session.run("import os, sys\nos.write(1, b'raw out\\n')\nprint('warn', file=sys.stderr)", timeout_s=GOOD)
    assert result.stdout == "raw out\n" and result.stderr == "warn\n"
    assert session.run("1 + 1", timeout_s=GOOD).stdout == ""


def test_files_written_in_a_cell_are_listed_images_apart(session):
    code = (
        f"open('plot.png', 'wb').write({PNG!r})\nimport os\nos.makedirs('out', exist_ok=True)\n"
        "open('out/data.csv', 'w').write('a,b\\n1,2\\n')"
    )
    result = session.run(code, timeout_s=GOOD)
    assert result.ok, result.error
    assert result.files == ["out/data.csv", "plot.png"] and result.images == ["plot.png"]
    assert (session.workspace / "plot.png").read_bytes() == PNG
    assert session.run("open('out/data.csv').read()", timeout_s=GOOD).files == []
    assert session.run("open('out/data.csv', 'a').write('3,4\\n')", timeout_s=GOOD).files == ["out/data.csv"]


def test_input_sees_an_empty_stdin(session):
    assert session.run("input()", timeout_s=GOOD).error_line == "EOFError: EOF when reading a line"


def test_a_timeout_kills_and_restarts_the_session(session):
    session.run("kept = 1", timeout_s=GOOD)
    start = time.monotonic()
    slow = session.run("import time\nprint('started', flush=True)\ntime.sleep(60)", timeout_s=1.0)
    assert time.monotonic() - start < 15
    assert slow.timed_out and slow.restarted and slow.stdout == "started\n"
    assert "ran longer than 1 s" in slow.error and "variables are lost" in slow.error
    gone = session.run("kept", timeout_s=GOOD)
    assert gone.error_line == "NameError: name 'kept' is not defined" and not gone.restarted
    assert session.run("40 + 2", timeout_s=GOOD).value == "42"


def test_cpu_limit_ends_the_cell_not_the_session(mode, tmp_path):
    with PythonSession(tmp_path / "ws", limits=Limits(cpu_s=1)) as py:
        py.run("kept = 'yes'", timeout_s=GOOD)
        busy = py.run("while True:\n    pass", timeout_s=60.0)
        assert busy.error_line.startswith("CPUTimeExceeded") and not busy.restarted
        assert py.run("kept", timeout_s=GOOD).value == "'yes'"


def test_an_interpreter_that_dies_is_restarted(session):
    died = session.run("import os\nos._exit(7)", timeout_s=GOOD)
    assert died.restarted and not died.timed_out and "exited with status 7" in died.error
    assert session.run("'back'", timeout_s=GOOD).value == "'back'"


def test_close_kills_the_process_tree(mode, tmp_path):
    py = PythonSession(tmp_path / "ws")
    py.run(
        "import subprocess\nchild = subprocess.Popen(['sleep', '60'])" if mode == "namespaces" else "1", timeout_s=GOOD
    )
    assert len(leftovers(py.workspace)) >= (2 if mode == "namespaces" else 1)  # interpreter, sleep
    py.close()
    assert leftovers(py.workspace) == []
    with pytest.raises(RuntimeError, match="closed"):
        py.run("1")


def test_session_outlives_the_thread_that_opened_it(mode, tmp_path):
    opened = []
    opener = threading.Thread(target=lambda: opened.append(PythonSession(tmp_path / "ws")))
    opener.start()
    opener.join()
    with opened[0] as py:
        time.sleep(0.5)  # a parent-death signal tied to the ended thread would have fired by now
        assert py.run("'alive'", timeout_s=GOOD).value == "'alive'"


def test_long_values_and_tracebacks_are_cut_keeping_the_exception(session):
    assert len(session.run("'x' * 100_000", timeout_s=GOOD).value) < 21_000
    error = session.run("raise ValueError('y' * 100_000 + ' END')", timeout_s=GOOD).error
    assert len(error) < 21_000 and error.rstrip().endswith("END") and "characters cut" in error
