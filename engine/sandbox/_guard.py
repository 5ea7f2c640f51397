"""The fallback sandbox, for kernels that forbid unprivileged namespaces (e.g. Ubuntu 23.10+ AppArmor policy).

Two layers, both weaker than namespaces and said so by `isolation()`:
- a seccomp filter (installed by _jail.py before the execve, kept by every descendant): socket() for AF_INET and
  AF_INET6 fails with EACCES, io_uring (which can open sockets without socket()) with ENOSYS, and syscalls of a
  foreign ABI (i386, x32) with EPERM. Written as raw BPF through ctypes, so no extra package is needed.
- a Python audit hook (PEP 578), installed here before the program runs: it refuses opening for write, creating,
  deleting, renaming or changing files outside the workspace, reading the hidden paths, and starting processes
  (subprocess, os.system, exec, fork). Native code (C extensions, ctypes) can step around an audit hook: it
  stops Python code that writes or deletes where it should not, not a determined attacker.

Run as `python _guard.py CONFIG_JSON (SCRIPT | -c SOURCE) [ARGS...]`; standard library only.
"""

import ctypes
import json
import os
import platform
import sys

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
LD_ABS, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # audit arch, socket() number
IO_URING_SETUP = 425
EPERM, EACCES, ENOSYS, AF_INET, AF_INET6 = 1, 13, 38, 2, 10
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PROCESS_EVENTS = {
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "os.startfile",
}
PATH_EVENTS = {
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.chmod",
    "os.chown",
    "os.truncate",
    "os.utime",
    "os.link",
    "os.symlink",
    "os.rename",
    "shutil.rmtree",
    "shutil.move",
    "shutil.copyfile",
}


class Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]


def install_seccomp(libc) -> None:
    arch, socket_nr = ARCHES[platform.machine()]
    code = [
        (LD_ABS, 0, 0, 4),
        (JEQ, 1, 0, arch),
        (RET, 0, 0, SECCOMP_RET_ERRNO | EPERM),
        (LD_ABS, 0, 0, 0),
        (JGE, 0, 1, 0x40000000),
        (RET, 0, 0, SECCOMP_RET_ERRNO | EPERM),
        (JEQ, 0, 1, IO_URING_SETUP),
        (RET, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
        (JEQ, 1, 0, socket_nr),
        (RET, 0, 0, SECCOMP_RET_ALLOW),
        (LD_ABS, 0, 0, 16),
        (JEQ, 2, 0, AF_INET),
        (JEQ, 1, 0, AF_INET6),
        (RET, 0, 0, SECCOMP_RET_ALLOW),
        (RET, 0, 0, SECCOMP_RET_ERRNO | EACCES),
    ]
    filters = (Filter * len(code))(*[Filter(*ins) for ins in code])
    prog = Program(len(code), filters)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter refused: {os.strerror(err)}")


def install_audit_hook(workspace: str, hidden: list[str], exposed: list[str]) -> None:
    workspace = os.path.realpath(workspace)
    hidden = [os.path.realpath(p) for p in hidden]
    exposed = [os.path.realpath(p) for p in exposed] + [workspace]
    realpath, fspath, isinstance_, str_, bytes_ = os.path.realpath, os.fspath, isinstance, str, bytes

    def inside(path: str, root: str) -> bool:
        return path == root or path.startswith(root.rstrip("/") + "/")

    def resolve(path, dir_fd=None):
        if isinstance_(path, int):
            return None
        path = fspath(path)
        if isinstance_(path, bytes_):
            path = os.fsdecode(path)
        if isinstance_(dir_fd, int) and dir_fd >= 0 and not path.startswith("/"):
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        return realpath(path)

    def refuse_write(path) -> None:
        if path is not None and path != os.devnull and not inside(path, workspace):
            raise PermissionError(f"sandbox: writing outside the workspace is not allowed: {path}")

    def refuse_read(path) -> None:
        if path is not None and any(inside(path, h) for h in hidden) and not any(inside(path, e) for e in exposed):
            raise PermissionError(f"sandbox: reading this path is not allowed: {path}")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path = resolve(args[0])
            mode, flags = args[1] or "", args[2] or 0
            if any(c in str_(mode) for c in "wax+") or flags & WRITE_FLAGS:
                refuse_write(path)
            else:
                refuse_read(path)
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            refuse_read(resolve(args[0]))
        elif event in PROCESS_EVENTS:
            raise PermissionError(f"sandbox: starting processes is not allowed ({event})")
        elif event in PATH_EVENTS:
            dir_fd = args[-1] if event in ("os.remove", "os.rmdir", "os.mkdir") and len(args) > 1 else None
            targets = args[:2] if event in ("os.rename", "os.link", "os.symlink", "shutil.move") else args[:1]
            for target in targets:
                if isinstance_(target, (str_, bytes_, os.PathLike)):
                    refuse_write(resolve(target, dir_fd if isinstance_(dir_fd, int) else None))

    sys.addaudithook(hook)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    install_audit_hook(cfg["workspace"], cfg["hide"], cfg["expose"])
    if sys.argv[2] == "-c":
        source = sys.argv[3]
        sys.argv = ["-c", *sys.argv[4:]]
        sys.path[0] = cfg["workspace"]
        exec(compile(source, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        import runpy

        script = sys.argv[2]
        sys.argv = sys.argv[2:]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
