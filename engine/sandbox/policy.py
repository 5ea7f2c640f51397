"""What a sandbox allows (limits, hidden paths), which isolation this machine gives, and how one is started.

Evaluation (generated programs) and the agents' Python tool both start sandboxes through `launch`, so the
two can never drift apart in what they allow. `isolation()` probes once per process which kind of isolation
the kernel permits and says it in words the UI can show.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
JAIL = HERE / "_jail.py"
GUARD = HERE / "_guard.py"
MODES = ("namespaces", "seccomp", "none")
# Overrides the probe, e.g. to test the fallback on a machine that has namespaces.
MODE_ENV = "INKSTONE_SANDBOX_ISOLATION"
NOBODY = 65534
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not a failure of the program inside it)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process tree (rlimits, set before the program starts)."""

    cpu_s: int = 10
    """CPU seconds per program (per cell in a Python session); beyond it the process is killed (SIGXCPU)."""
    memory_mb: int = 1024
    """Address space per process in MiB (RLIMIT_AS); a larger allocation raises MemoryError."""
    processes: int = 64
    """Processes plus threads the sandbox may have at once (RLIMIT_NPROC); stops fork bombs."""
    file_size_mb: int = 64
    """Largest file the program may write, in MiB (RLIMIT_FSIZE)."""
    open_files: int = 256
    """Open file descriptors per process (RLIMIT_NOFILE)."""
    output_bytes: int = 100_000
    """stdout and stderr are each kept up to this many bytes; the rest is dropped and the cut is marked."""

    def rlimits(self) -> dict:
        mib = 1024 * 1024
        return {
            "cpu_s": self.cpu_s,
            "memory_bytes": self.memory_mb * mib,
            "processes": self.processes,
            "file_size_bytes": self.file_size_mb * mib,
            "open_files": self.open_files,
        }


@dataclass(frozen=True)
class Isolation:
    """Which isolation this machine gives sandboxed code, in words for the UI."""

    mode: str
    """'namespaces' (strong), 'seccomp' (network filter plus a Python audit hook) or 'none' (audit hook only)."""
    network: str
    """'network namespace', 'seccomp' or 'none'."""
    filesystem: str
    """How writes outside the workspace and reads of hidden paths are stopped."""
    processes: str
    """How the process tree is contained."""
    reason: str = ""
    """Why a stronger mode was not available (the kernel's refusal), empty for 'namespaces'."""

    def __str__(self) -> str:
        return f"network: {self.network}; files: {self.filesystem}; processes: {self.processes}"


DESCRIPTIONS = {
    "namespaces": (
        "network namespace",
        "read-only mount namespace; only the workspace is writable; home, temp and data directories are hidden",
        "PID namespace, RLIMIT_NPROC per sandbox",
    ),
    "seccomp": (
        "seccomp",
        "Python audit hook (refuses writes outside the workspace and reads of hidden paths; "
        "native code can step around it)",
        "audit hook refuses process starts",
    ),
    "none": (
        "none",
        "Python audit hook (refuses writes outside the workspace and reads of hidden paths; native "
        "code can step around it)",
        "audit hook refuses process starts",
    ),
}


def default_hidden() -> list[str]:
    """Places sandboxed code must not read: homes, temp dirs, runtime sockets, the data dir."""
    paths = [
        "/home",
        "/root",
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/run",
        "/mnt",
        "/media",
        "/srv",
        str(Path.home()),
        tempfile.gettempdir(),
        str(Path.home() / ".inkstone"),
    ]
    if os.environ.get("INKSTONE_HOME"):
        paths.append(os.environ["INKSTONE_HOME"])
    return sorted({os.path.realpath(p) for p in paths})


def hideable(paths) -> list[str]:
    """Hiding "/" (a service user's home, a careless argument) would hide Python itself."""
    return sorted({os.path.realpath(p) for p in paths} - {"/"})


def python_paths() -> list[str]:
    """What the sandboxed interpreter must still read inside hidden places: its prefixes and site-packages."""
    import site

    paths = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *site.getsitepackages(),
    }
    return sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})


def scrubbed_env(workspace: Path) -> dict[str, str]:
    """The only environment sandboxed code sees: nothing of the parent's (no tokens, no proxies)."""
    tmp = workspace / ".tmp"
    return {
        "PATH": SYSTEM_PATH,
        "HOME": str(workspace),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(tmp / "matplotlib"),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def real_root() -> bool:
    """Root of the machine, whose sandboxes run as `nobody` (the same test as _jail.real_root)."""
    if os.getuid() != 0:
        return False
    with open("/proc/self/uid_map") as f:
        return f.read().split() == ["0", "0", "4294967295"]


def prepare_workspace(workspace: Path, mode: str) -> None:
    """Make the workspace (and its .tmp) writable by the sandbox; as root the sandbox runs as `nobody`."""
    (workspace / ".tmp").mkdir(parents=True, exist_ok=True)
    if mode == "namespaces" and real_root():
        for root, dirs, files in os.walk(workspace):
            for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.lchown(name, NOBODY, NOBODY)


def launch(
    program: Sequence[str],
    workspace: Path,
    limits: Limits,
    *,
    hide: Sequence[str | os.PathLike] = (),
    pass_fds: Sequence[int] = (),
    cpu_limit: bool = True,
    die_with_caller: bool = True,
    mode: str | None = None,
) -> subprocess.Popen:
    """Start `python <program...>` sandboxed in `workspace`, with pipes on stdin/stdout/stderr.

    The process leads its own session (kill the whole group with os.killpg). `pass_fds` are the only parent
    descriptors it inherits besides its pipes. `cpu_limit=False` leaves RLIMIT_CPU unset (a session limits
    each cell itself). `die_with_caller` kills the sandbox when the calling thread ends: right for a call that
    waits for the end, wrong for a session that outlives the thread that opened it (a session ends instead
    when its stdin closes). Raises SandboxError when the sandbox cannot be set up.
    """
    mode = mode or isolation().mode
    workspace = Path(os.path.realpath(workspace))
    prepare_workspace(workspace, mode)
    hidden = hideable([*default_hidden(), *hide])
    exposed = python_paths()
    python = [sys.executable, "-E", "-s", "-B"]
    if mode == "namespaces":
        argv = [*python, *program]
    else:
        guard_cfg = {"workspace": str(workspace), "hide": hidden, "expose": exposed}
        argv = [*python, str(GUARD), json.dumps(guard_cfg), *program]
    cfg = {
        "mode": mode,
        "workspace": str(workspace),
        "hide": hidden,
        "expose": exposed,
        "argv": argv,
        "env": scrubbed_env(workspace),
        "die_with_caller": die_with_caller,
        "limits": {**limits.rlimits(), **({} if cpu_limit else {"cpu_s": None})},
    }
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(JAIL), json.dumps(cfg), str(status_w)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w, *pass_fds),
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
        )
    finally:
        os.close(status_w)
    try:
        message = read_status(status_r)
    finally:
        os.close(status_r)
    if message:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # a jail that never started must not linger
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
        raise SandboxError(f"sandbox setup failed ({mode}): {message}")
    return proc


def read_status(fd: int, timeout_s: float = 60.0) -> str:
    """Everything the jail wrote before its execve; empty when the program started."""
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return f"no start within {timeout_s:.0f}s"
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)


_probe_lock = threading.Lock()


@functools.cache
def _probe() -> Isolation:
    forced = os.environ.get(MODE_ENV)
    if forced and forced not in MODES:
        raise SandboxError(f"{MODE_ENV}={forced!r}: expected one of {', '.join(MODES)}")
    reasons = []
    for mode in [forced] if forced else MODES:
        with tempfile.TemporaryDirectory(prefix="inkstone-probe-") as tmp:
            try:
                proc = launch(["-c", "pass"], Path(tmp), Limits(), mode=mode)
            except SandboxError as exc:
                reasons.append(str(exc))
                continue
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            if proc.returncode != 0:
                reasons.append(f"{mode}: the probe program exited with {proc.returncode}")
                continue
        return Isolation(mode, *DESCRIPTIONS[mode], reason="; ".join(reasons))
    raise SandboxError("no sandbox can start here: " + "; ".join(reasons))


def isolation() -> Isolation:
    """The isolation sandboxes get on this machine (probed once, by starting a real sandbox)."""
    with _probe_lock:
        return _probe()
