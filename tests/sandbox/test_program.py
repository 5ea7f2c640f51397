"""run_program's contract: output, stdin, exit status, files, truncation, and what the program can see."""

from __future__ import annotations

import os

from engine.sandbox import Limits, isolation, run_program

GOOD = 30.0  # timeout for programs that end on their own: generous, since the test machine is shared


def test_runs_a_program_with_stdin_and_reports_its_end(mode):
    out = run_program(
        "import sys\nname = input()\nprint('hello', name[::-1])\nsys.exit(3)", stdin="abc\n", timeout_s=GOOD
    )
    assert (out.status, out.exit_code, out.stdout, out.killed) == ("error", 3, "hello cba\n", False)
    assert out.reason == "exited with status 3" and out.isolation == mode


def test_ok_program_and_the_error_line_of_a_traceback(mode):
    assert run_program("print(sum(range(10)))", timeout_s=GOOD).stdout == "45\n"
    out = run_program("def f():\n    raise ValueError('bad value 7')\nf()", timeout_s=GOOD)
    assert out.status == "error" and out.error_line == "ValueError: bad value 7"
    assert "line 2, in f" in out.stderr


def test_chinese_text_round_trips(mode):
    out = run_program("print(input() + '，你好')", stdin="世界", timeout_s=GOOD)
    assert out.stdout == "世界，你好\n"


def test_files_are_written_into_a_given_workspace_and_listed(mode, tmp_path):
    out = run_program(
        "import helper\nopen('out/result.txt', 'w').write(helper.VALUE)",
        timeout_s=GOOD,
        files={"helper.py": "VALUE = 'from helper'\n", "out/.keep": b""},
        workspace=tmp_path,
    )
    assert out.ok, out.stderr
    assert (tmp_path / "out" / "result.txt").read_text() == "from helper"
    assert out.files == ["helper.py", "main.py", "out/.keep", "out/result.txt"]


def test_a_fresh_workspace_is_removed_afterwards(mode):
    out = run_program("import os; print(os.getcwd())", timeout_s=GOOD)
    assert out.ok and out.stdout.strip().startswith(os.path.realpath("/tmp"))
    assert not os.path.exists(out.stdout.strip())


def test_files_may_not_point_outside_the_workspace(tmp_path):
    try:
        run_program("pass", files={"../escape.py": "x"}, workspace=tmp_path / "ws")
    except ValueError as exc:
        assert "escape.py" in str(exc)
    else:
        raise AssertionError("a file outside the workspace was accepted")
    assert not (tmp_path / "escape.py").exists()


def test_output_is_cut_at_the_cap_with_a_marker(mode):
    out = run_program("print('x' * 50_000)", limits=Limits(output_bytes=1000), timeout_s=GOOD)
    assert out.ok and out.stdout.startswith("x" * 1000)
    assert out.stdout.endswith("[... output truncated: 49001 more bytes]")


def test_environment_is_scrubbed_and_no_secret_reaches_the_program(mode, monkeypatch):
    monkeypatch.setenv("INKSTONE_TOKEN", "tok-5ecret-771")
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except (OSError, PermissionError):\n"
        "        pass\n"
    )
    out = run_program(code, timeout_s=GOOD)
    assert out.ok, out.stderr
    assert "INKSTONE_TOKEN" not in out.stdout and "tok-5ecret-771" not in out.stdout
    assert "'HOME'" in out.stdout and "'PATH'" in out.stdout


def test_no_descriptor_of_the_parent_is_inherited(mode, tmp_path):
    leaked = os.open(tmp_path / "parent.txt", os.O_CREAT | os.O_WRONLY)
    os.set_inheritable(leaked, True)
    try:
        out = run_program("import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))", timeout_s=GOOD)
    finally:
        os.close(leaked)
    assert out.ok, out.stderr
    assert out.stdout.strip() == "[0, 1, 2, 3]"  # 3 is the listing's own descriptor


def test_isolation_says_which_mode_is_active(mode):
    iso = isolation()
    assert iso.mode == mode
    expected = {"namespaces": "network namespace", "seccomp": "seccomp"}[mode]
    assert iso.network == expected and expected in str(iso)
