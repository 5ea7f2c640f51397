"""A persistent, sandboxed Python interpreter per conversation: the agents' Python tool.

Variables live across cells like in a notebook. Each cell returns its stdout and stderr, the repr of its last
expression, the traceback of its error, and the files it wrote in the workspace (images among them, for the
playground to show). A cell that runs past its timeout, or that kills its interpreter, gets the whole sandbox
killed and a fresh one started, and its result says so: the variables are gone, the workspace files stay.
The walls are the ones of `run_program` (same launcher, same limits).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import select
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.sandbox.policy import Limits, launch
from engine.sandbox.program import TRUNCATED, kill_group

REPL_SOURCE = (Path(__file__).resolve().parent / "_repl.py").read_text(encoding="utf-8")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp"}
# After the reply, the cell's last output is already in the pipes: this only bounds a wedged reader.
SENTINEL_WAIT_S = 10.0


@dataclass
class CellResult:
    """What one cell did."""

    stdout: str = ""
    """Everything the cell printed (cut at Limits.output_bytes, marked)."""
    stderr: str = ""
    """Everything it wrote to stderr (warnings, a subprocess's errors), cut the same way."""
    value: str | None = None
    """repr() of the last expression's value, like a notebook's Out[n]; None when there is none or it is None."""
    error: str | None = None
    """The traceback text when the cell raised (its last line names the exception), or why the session ended."""
    files: list[str] = field(default_factory=list)
    """Workspace files the cell created or changed, relative paths, sorted."""
    images: list[str] = field(default_factory=list)
    """Those of `files` that are images (png, jpg, svg, ...)."""
    duration_s: float = 0.0
    """Wall-clock seconds the cell took."""
    timed_out: bool = False
    """True when the cell ran past its timeout and was killed."""
    restarted: bool = False
    """True when the interpreter was killed or died and a fresh one was started: earlier variables are gone."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_line(self) -> str:
        lines = [line for line in (self.error or "").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


class CellReader(threading.Thread):
    """Reads one output pipe of the interpreter and cuts it into cells at each sentinel."""

    def __init__(self, stream, sentinel: bytes, cap: int):
        super().__init__(daemon=True)
        self.stream, self.sentinel, self.cap = stream, sentinel, cap
        self.cells: queue.Queue[str] = queue.Queue()
        self.kept, self.dropped, self.carry = bytearray(), 0, b""
        self.ended = threading.Event()
        self.start()

    def keep(self, data: bytes) -> None:
        room = max(self.cap - len(self.kept), 0)
        self.kept += data[:room]
        self.dropped += max(len(data) - room, 0)

    def cut(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        text += TRUNCATED.format(self.dropped) if self.dropped else ""
        self.kept, self.dropped = bytearray(), 0
        return text

    def run(self) -> None:
        read = getattr(self.stream, "read1", self.stream.read)
        try:
            while chunk := read(65536):
                data = self.carry + chunk
                while (at := data.find(self.sentinel)) >= 0:
                    self.keep(data[:at])
                    self.cells.put(self.cut())
                    data = data[at + len(self.sentinel) :]
                hold = len(self.sentinel) - 1  # the start of a sentinel split across two reads
                self.keep(data[: max(len(data) - hold, 0)])
                self.carry = data[max(len(data) - hold, 0) :]
        except (OSError, ValueError):
            pass  # the pipe was closed under us by close()
        self.keep(self.carry)
        self.ended.set()

    def next_cell(self, timeout_s: float) -> str:
        try:
            return self.cells.get(timeout=timeout_s)
        except queue.Empty:
            return self.cut()

    def leftover(self, timeout_s: float = 2.0) -> str:
        """What the killed interpreter printed in its last cell."""
        self.ended.wait(timeout_s)
        return self.cut()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".tmp"]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            seen[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
    return seen


class PythonSession:
    """A long-lived sandboxed interpreter whose only writable place is `workspace` (created if missing).

    `run(code, timeout_s)` executes one cell; `close()` (or leaving a `with` block) kills the process tree.
    Not for concurrent use: cells of one session run one at a time (calls are serialized).
    """

    def __init__(
        self, workspace: str | os.PathLike, *, limits: Limits | None = None, hide: Sequence[str | os.PathLike] = ()
    ):
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.limits, self.hide = limits or Limits(), tuple(hide)
        self._lock = threading.Lock()
        self._proc = None
        self._start()

    def _start(self) -> None:
        sentinel = f"\x1e{secrets.token_hex(16)}\x1e\n".encode()
        reply_r, reply_w = os.pipe()
        try:
            # CPU time is limited per cell by the interpreter loop itself (a soft limit it raises each cell).
            self._proc = launch(
                ["-c", REPL_SOURCE, sentinel[1:-2].decode(), str(reply_w)],
                self.workspace,
                self.limits,
                hide=self.hide,
                pass_fds=(reply_w,),
                cpu_limit=False,
                die_with_caller=False,
            )
        except BaseException:
            os.close(reply_r)
            raise
        finally:
            os.close(reply_w)
        self._replies = os.fdopen(reply_r, "rb")
        self._out = CellReader(self._proc.stdout, sentinel, self.limits.output_bytes)
        self._err = CellReader(self._proc.stderr, sentinel, self.limits.output_bytes)

    def _stop(self) -> None:
        if self._proc is None:
            return
        kill_group(self._proc)
        self._proc.wait()
        for reader in (self._out, self._err):
            reader.ended.wait(2.0)  # the pipes reach their end once the sandbox's processes are gone
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr, self._replies):
            with contextlib.suppress(OSError):
                stream.close()
        self._proc = None

    def run(self, code: str, timeout_s: float = 30.0) -> CellResult:
        """Run one cell; never raises for anything the code does (errors and timeouts are in the result)."""
        with self._lock:
            if self._proc is None:
                raise RuntimeError("this Python session is closed")
            before = snapshot(self.workspace)
            start = time.monotonic()
            result = self._exchange(code, timeout_s)
            result.duration_s = time.monotonic() - start
            after = snapshot(self.workspace)
            result.files = sorted(path for path, stamp in after.items() if before.get(path) != stamp)
            result.images = [p for p in result.files if Path(p).suffix.lower() in IMAGE_SUFFIXES]
            return result

    def _exchange(self, code: str, timeout_s: float) -> CellResult:
        request = json.dumps({"code": code, "cpu_s": self.limits.cpu_s}) + "\n"
        try:
            self._proc.stdin.write(request.encode("utf-8"))
            self._proc.stdin.flush()
            ready, _, _ = select.select([self._replies], [], [], timeout_s)
            line = self._replies.readline() if ready else None
        except (BrokenPipeError, OSError):
            line = b""
        if line:
            reply = json.loads(line)
            return CellResult(
                stdout=self._out.next_cell(SENTINEL_WAIT_S),
                stderr=self._err.next_cell(SENTINEL_WAIT_S),
                value=reply["value"],
                error=reply["error"],
            )
        timed_out = line is None
        if timed_out:
            why = f"TimeoutError: the cell ran longer than {timeout_s:g} s and was killed"
        else:
            self._proc.wait()
            code_ = self._proc.returncode
            ended = f"killed by {signal.Signals(-code_).name}" if code_ < 0 else f"exited with status {code_}"
            why = f"SessionDied: the Python process {ended}"
        self._stop()
        stdout, stderr = self._out.leftover(), self._err.leftover()
        self._start()
        return CellResult(
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            restarted=True,
            error=f"{why}; a new session was started and earlier variables are lost",
        )

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> PythonSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
