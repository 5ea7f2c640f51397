"""Child processes that cannot outlive the process that started them, even when it is killed with SIGKILL.

A job's worker, its shard pool, a training launcher and its ranks form a tree; a kill -9 anywhere above must
take every process below with it, or an orphan keeps the CPU, the GPU or a file lock. Two Linux mechanisms:
PR_SET_PDEATHSIG for a direct child (the kernel signals it when its parent dies) and a pidfd watch for a
process further down (a torchrun or DeepSpeed rank, whose direct parent is the launcher, not us).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux; a no-op elsewhere).

    Runs in the child: as a Popen preexec_fn, a pool initializer or first thing in main. With parent_pid (the
    parent's pid, taken before the fork) a parent that already died in between is caught too.
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent is gone already: the signal will never come


def exit_when_gone(pid: int) -> None:
    """Kill this process the moment process `pid` exits (a daemon thread waits on a pidfd; Linux 5.3+).

    For a process started by someone else's launcher: it cannot know when that launcher dies, but it can watch
    the process that owns the whole run.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, an old kernel, or the owner is already gone
        if not _alive(pid):
            os.kill(os.getpid(), signal.SIGKILL)
        return

    def watch() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=f"exit-when-{pid}-gone", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def sigterm_deferred():
    """Hold SIGTERM back from this thread (and the threads and children it starts) for the block's duration.

    Around a fork this closes the window in which a child still runs the parent's Python SIGTERM handler: the
    child inherits the blocked mask, resets its handler, then unblocks (see `reset_child_signals`). A SIGTERM
    that arrives meanwhile waits and is handled when the block ends.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def reset_child_signals(parent_pid: int) -> None:
    """For a forked helper (a pool initializer): SIGTERM ends it, Ctrl-C is the parent's, dies with the parent.

    A forked child inherits its parent's Python signal handlers; a job worker's SIGTERM handler only sets a
    flag, which in a child means terminate() cannot end it.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
