"""Run one untrusted Python program to its end in a fresh sandbox and say what happened.

This is what evaluation uses for every generated program: a new process tree in a new temporary workspace,
the limits of `Limits`, a wall-clock timeout after which the whole process group (and, in namespace mode, the
whole PID namespace) is killed, and output kept up to a cap so a program that prints forever cannot fill the
memory of the caller.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.sandbox.policy import Limits, isolation, launch

TRUNCATED = "\n[... output truncated: {} more bytes]"


@dataclass
class Outcome:
    """How a sandboxed program ended."""

    status: str
    """'ok' (exit 0), 'error' (non-zero exit), 'timeout' (wall clock) or 'killed' (a signal, e.g. CPU limit)."""
    exit_code: int | None
    """The exit status, or None when it was ended by a signal or the timeout."""
    stdout: str
    """Standard output, cut at Limits.output_bytes with a marker line."""
    stderr: str
    """Standard error, cut the same way."""
    duration_s: float
    """Wall-clock seconds from start to end."""
    killed: bool = False
    """True when the sandbox (timeout) or the kernel (a limit, a signal) ended it."""
    reason: str = ""
    """Why it ended, in words: 'exited with status 1', 'timed out after 5 s', 'CPU time limit (10 s)'."""
    signal: int | None = None
    """The signal that ended it, if one did."""
    isolation: str = ""
    """The isolation mode it ran under ('namespaces', 'seccomp' or 'none')."""
    files: list[str] = field(default_factory=list)
    """Files present in the workspace at the end, relative paths (only when the caller gave the workspace)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error_line(self) -> str:
        """The last non-empty stderr line: for a Python traceback, the exception itself."""
        lines = [line for line in self.stderr.splitlines() if line.strip() and not line.startswith("[... output")]
        return lines[-1].strip() if lines else ""


class CappedReader(threading.Thread):
    """Reads a pipe to its end, keeping the first `cap` bytes and counting the rest."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream, self.cap, self.kept, self.dropped = stream, cap, bytearray(), 0
        self.start()

    def run(self) -> None:
        read = getattr(self.stream, "read1", self.stream.read)
        while chunk := read(65536):
            room = self.cap - len(self.kept)
            self.kept += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        return text + TRUNCATED.format(self.dropped) if self.dropped else text


def feed(stream, data: bytes) -> None:
    try:
        if data:
            stream.write(data)
    except (BrokenPipeError, OSError):
        pass  # the program ended or closed stdin without reading everything: not our error
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def describe_end(returncode: int, timed_out: bool, timeout_s: float, limits: Limits) -> tuple[str, str, bool]:
    if timed_out:
        return "timeout", f"timed out after {timeout_s:g} s", True
    if returncode == 0:
        return "ok", "exited with status 0", False
    if returncode > 0:
        return "error", f"exited with status {returncode}", False
    sig = signal.Signals(-returncode)
    if sig == signal.SIGXCPU:
        return "killed", f"CPU time limit ({limits.cpu_s} s)", True
    if sig == signal.SIGXFSZ:
        return "killed", f"file size limit ({limits.file_size_mb} MiB)", True
    return "killed", f"killed by {sig.name}", True


def run_program(
    code: str,
    *,
    stdin: str | bytes | None = None,
    timeout_s: float = 10.0,
    limits: Limits | None = None,
    files: Mapping[str, str | bytes] | None = None,
    args: Sequence[str] = (),
    workspace: str | os.PathLike | None = None,
    hide: Sequence[str | os.PathLike] = (),
) -> Outcome:
    """Run `code` as `python main.py [args]` in a sandbox and wait for its end (or the timeout).

    `files` are written into the workspace first (relative path -> text or bytes). Without `workspace` a fresh
    temporary directory is used and removed afterwards; with one, it is used as is and kept, and the files in it
    at the end are listed in `Outcome.files`. `hide` adds paths the program must not read. Raises SandboxError
    only when the sandbox itself cannot start.
    """
    limits = limits or Limits()
    own_workspace = workspace is None
    root = Path(tempfile.mkdtemp(prefix="inkstone-sandbox-")) if own_workspace else Path(workspace)
    try:
        write_files(root, {"main.py": code, **(files or {})})
        start = time.monotonic()
        proc = launch(["main.py", *args], root, limits, hide=hide)
        data = stdin.encode("utf-8") if isinstance(stdin, str) else (stdin or b"")
        threading.Thread(target=feed, args=(proc.stdin, data), daemon=True).start()
        out, err = CappedReader(proc.stdout, limits.output_bytes), CappedReader(proc.stderr, limits.output_bytes)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        kill_group(proc)  # also whatever the program left running in its group
        proc.wait()
        duration = time.monotonic() - start
        for reader in (out, err):
            reader.join(timeout=5)
        status, reason, killed = describe_end(proc.returncode, timed_out, timeout_s, limits)
        return Outcome(
            status=status,
            exit_code=proc.returncode if proc.returncode >= 0 and not timed_out else None,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=duration,
            killed=killed,
            reason=reason,
            signal=-proc.returncode if proc.returncode < 0 and not timed_out else None,
            isolation=isolation().mode,
            files=[] if own_workspace else list_files(root),
        )
    finally:
        if own_workspace:
            shutil.rmtree(root, ignore_errors=True)


def write_files(root: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()):
            raise ValueError(f"files: {name!r} points outside the workspace")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def list_files(root: Path) -> list[str]:
    """Regular files under `root`, relative, sorted; the sandbox's own .tmp is left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".tmp"]
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return sorted(found)
