"""Hostile programs, each contained and reported: under the namespace sandbox and under the seccomp fallback.

What each mode claims (see engine/sandbox/policy.py DESCRIPTIONS) is what is tested here: in namespace mode the
file system outside the workspace is read-only, home/temp/data directories are invisible, there is no network
and no process outlives the program; in the fallback, seccomp refuses internet sockets and the audit hook refuses
writes and deletes outside the workspace, reads of hidden paths and process starts.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from engine.sandbox import Limits, run_program
from tests.sandbox.conftest import leftovers, use_mode

GOOD = 30.0
SMALL = Limits(cpu_s=5, memory_mb=256, processes=24)


def test_infinite_loop_is_killed_at_the_timeout(mode):
    start = time.monotonic()
    out = run_program("while True:\n    pass", timeout_s=1.0, limits=SMALL)
    assert (out.status, out.killed, out.exit_code) == ("timeout", True, None)
    assert out.reason == "timed out after 1 s"
    assert time.monotonic() - start < 15


def test_cpu_limit_ends_a_busy_program_before_the_timeout(mode):
    out = run_program("while True:\n    pass", timeout_s=60.0, limits=Limits(cpu_s=1))
    assert out.status == "killed" and out.reason == "CPU time limit (1 s)" and out.killed


def test_program_that_ignores_sigterm_is_killed(mode):
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
        "time.sleep(120)"
    )
    out = run_program(code, timeout_s=1.5, limits=SMALL)
    assert out.status == "timeout" and out.stdout == "ready\n"


def test_memory_bomb_hits_the_address_space_limit(mode):
    out = run_program(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))", timeout_s=GOOD, limits=SMALL
    )
    assert out.status == "error" and out.error_line == "MemoryError"


def test_fork_bomb_is_contained_and_nothing_survives(mode, tmp_path):
    code = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError as exc:\n"
        "        print('fork refused:', type(exc).__name__, flush=True)\n"
        "        time.sleep(120)\n"
    )
    out = run_program(code, timeout_s=3.0, limits=SMALL, workspace=tmp_path)
    assert out.status == "timeout"
    assert "fork refused" in out.stdout
    expected = "BlockingIOError" if mode == "namespaces" else "PermissionError"  # RLIMIT_NPROC / audit hook
    assert expected in out.stdout
    assert out.stdout.count("fork refused") <= SMALL.processes
    assert leftovers(tmp_path) == []


def test_huge_output_is_capped_and_the_program_killed_at_the_timeout(mode):
    out = run_program(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", timeout_s=1.5, limits=Limits(output_bytes=10_000)
    )
    assert out.status == "timeout"
    kept, marker = out.stdout[:10_000], out.stdout[10_000:]
    assert kept == "x" * 10_000 and marker.startswith("\n[... output truncated: ")


def test_rm_rf_outside_the_workspace_leaves_it_intact(mode, hidden_dir):
    out = run_program(f"import shutil\nshutil.rmtree({str(hidden_dir)!r})", timeout_s=GOOD)
    assert out.status == "error"
    assert (hidden_dir / "secret.txt").read_text() == "TOPSECRET"


def test_writes_and_deletes_outside_the_workspace_fail(mode, visible_dir):
    code = (
        f"import os\nd = {str(visible_dir)!r}\n"
        "attempts = [lambda: open(os.path.join(d, 'new.txt'), 'w'), lambda: os.remove(os.path.join(d, 'keep.txt')),\n"
        "            lambda: os.rename(os.path.join(d, 'keep.txt'), 'stolen.txt'), lambda: os.mkdir(d + '/sub')]\n"
        "for attempt in attempts:\n"
        "    try:\n"
        "        attempt()\n"
        "        print('DONE')\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
        "print(open(os.path.join(d, 'keep.txt')).read())\n"
    )
    out = run_program(code, timeout_s=GOOD)
    assert out.ok, out.stderr
    assert "DONE" not in out.stdout and out.stdout.count("refused") == 4
    assert out.stdout.endswith("KEEP\n")  # readable, just not writable
    assert sorted(os.listdir(visible_dir)) == ["keep.txt"]


def test_reading_a_hidden_secret_fails(mode, hidden_dir):
    code = f"print(open({str(hidden_dir / 'secret.txt')!r}).read())"
    out = run_program(code, timeout_s=GOOD)
    assert out.status == "error" and "TOPSECRET" not in out.stdout
    expected = "FileNotFoundError" if mode == "namespaces" else "PermissionError"
    assert out.error_line.startswith(expected)


def test_paths_named_in_hide_are_hidden_too(mode, visible_dir):
    out = run_program(f"print(open({str(visible_dir / 'keep.txt')!r}).read())", timeout_s=GOOD, hide=[visible_dir])
    assert out.status == "error" and "KEEP" not in out.stdout


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_connect_to_a_listening_loopback_socket_fails(mode, host):
    family = socket.AF_INET if host == "127.0.0.1" else socket.AF_INET6
    try:
        listener = socket.socket(family)
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} on this machine")
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = f"import socket\ns = socket.create_connection(({host!r}, {port}), timeout=5)\nprint('CONNECTED')"
    with listener:
        out = run_program(code, timeout_s=GOOD)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert out.status == "error" and "CONNECTED" not in out.stdout
    expected = "Network is unreachable" if mode == "namespaces" else "Permission denied"
    assert expected in out.error_line or "Cannot assign requested address" in out.error_line


def test_namespace_mode_lets_no_process_outlive_the_program(namespaces, tmp_path):
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(1.0)\n"
        "    open('still-alive.txt', 'w').write('escaped')\n"
        "    os._exit(0)\n"
        "print('parent leaves')\n"
    )
    out = run_program(code, timeout_s=GOOD, workspace=tmp_path)
    assert out.ok and out.stdout == "parent leaves\n"
    time.sleep(2.0)
    assert not (tmp_path / "still-alive.txt").exists()
    assert leftovers(tmp_path) == []


def test_namespace_mode_shows_only_the_sandbox_processes(namespaces):
    out = run_program("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))", timeout_s=GOOD)
    assert out.ok, out.stderr
    assert out.stdout.strip() == "[1, 2]"  # the sandbox's init and the program itself


def test_namespace_mode_whole_tree_is_read_only_but_the_workspace(namespaces):
    code = (
        "import os\n"
        "for target in ('/usr/inkstone-probe', '/etc/inkstone-probe', '/tmp/inkstone-probe', 'ok.txt'):\n"
        "    try:\n"
        "        open(target, 'w').close()\n"
        "        print(target, 'written')\n"
        "    except OSError as exc:\n"
        "        print(target, 'refused', exc.errno)\n"
    )
    out = run_program(code, timeout_s=GOOD)
    assert out.ok, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        f"{p} refused 30" for p in ("/usr/inkstone-probe", "/etc/inkstone-probe", "/tmp/inkstone-probe")
    ]  # EROFS
    assert lines[3] == "ok.txt written"
    assert not os.path.exists("/usr/inkstone-probe") and not os.path.exists("/etc/inkstone-probe")


def test_fallback_refuses_process_starts(monkeypatch):
    use_mode(monkeypatch, "seccomp")
    out = run_program("import subprocess\nsubprocess.run(['echo', 'hi'])", timeout_s=GOOD)
    assert out.status == "error" and "starting processes is not allowed" in out.error_line


def test_file_size_limit(mode):
    out = run_program("open('big.bin', 'wb').write(b'0' * (3 * 2**20))", timeout_s=GOOD, limits=Limits(file_size_mb=1))
    assert out.status == "error" and "File too large" in out.error_line


def test_namespace_mode_walls_cannot_be_taken_down_from_inside(namespaces, hidden_dir):
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('umount', libc.umount2(b'/tmp', 2), 'remount', libc.mount(None, b'/usr', None, 32 | 4096, None))\n"
        "print('unshare', libc.unshare(0x10000000 | 0x00020000))  # a user + mount namespace of its own\n"
        "print('umount again', libc.umount2(b'/tmp', 2))\n"
        f"print(os.path.exists({str(hidden_dir)!r}))\n"
    )
    out = run_program(code, timeout_s=GOOD)
    assert out.ok, out.stderr
    assert out.stdout.splitlines() == ["umount -1 remount -1", "unshare 0", "umount again -1", "False"]
