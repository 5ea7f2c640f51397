"""The first process of every sandbox: it locks itself in, then becomes the sandboxed program (execve).

Why a separate script and not `preexec_fn`: namespaces, mounts and uid changes must happen in a fresh,
single-threaded process; forking a multithreaded parent (the app, an eval's thread pool) and running Python
there can deadlock. This file is run by path with `python -I`, so it uses the standard library only and
never imports the engine package.

Namespace mode (Linux with unprivileged user namespaces, or the machine's root), three processes:
  1. this one: new mount, network and PID namespaces (plus a user namespace in which we are root, unless we are
     the machine's root), then a fork; it stays outside the new PID namespace and ends the way the program ends;
  2. its child, PID 1 of the new PID namespace: mounts a fresh /proc (no view of the host's processes and their
     environments), makes every mount read-only, covers the hidden paths (home, /tmp, the data dir, ...) with
     empty read-only tmpfs, binds back what Python needs (its prefixes, read-only) and the workspace
     (read-write), forks the program and reaps; when it exits, the kernel kills whatever the program left in
     the namespace (daemons, setsid escapees). The program is not PID 1, so signals act on it as usual;
  3. the program: as the machine's root it becomes `nobody` (so RLIMIT_NPROC applies and root-owned files are
     not writable); it enters one more user namespace in which it is not root, so no capability survives the
     execve and the mounts cannot be undone, and the process limit counts this sandbox's processes only; then
     rlimits, parent-death signal, no_new_privs, chdir to the workspace, execve.
The network namespace has only a loopback interface, down: every connect fails with "Network is unreachable".

Fallback mode (no namespaces allowed): rlimits, no_new_privs, a seccomp filter that refuses AF_INET/AF_INET6
sockets and io_uring, and the program is started under an audit hook (see _guard.py) that refuses writes,
deletes and process starts outside the workspace and reads of hidden paths.

A setup failure is written to the status descriptor (close-on-exec: silence there means the execve happened).
"""

import ctypes
import errno
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
NOBODY = 65534
# statvfs f_flag bits -> the mount flags a remount must repeat (the kernel refuses to drop locked ones).
STATVFS_TO_MS = {
    1: MS_RDONLY,
    2: MS_NOSUID,
    4: MS_NODEV,
    8: MS_NOEXEC,
    1024: MS_NOATIME,
    2048: MS_NODIRATIME,
    4096: MS_RELATIME,
}

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    check(libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def kept_flags(path: str) -> int:
    """The flags of the mount holding `path` (nosuid, nodev, ...), which a remount must keep."""
    bits = os.statvfs(path).f_flag
    return sum(ms for st, ms in STATVFS_TO_MS.items() if bits & st and ms != MS_RDONLY)


def map_ids(inner_uid: int, outer_uid: int, inner_gid: int, outer_gid: int) -> None:
    """After unshare(CLONE_NEWUSER): map one uid/gid of the new namespace onto our own."""
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{inner_uid} {outer_uid} 1"),
        ("gid_map", f"{inner_gid} {outer_gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return sorted(set(points), key=len)


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bind_from_fd(fd: int, target: str, writable: bool) -> None:
    if not os.path.lexists(target):
        os.makedirs(target, exist_ok=True)
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | kept_flags(target) | (0 if writable else MS_RDONLY)
    mount(None, target, None, flags)


def build_filesystem(cfg: dict) -> None:
    # /dev/shm is not covered but replaced below by a private tmpfs.
    workspace, hide = cfg["workspace"], [h for h in cfg["hide"] if os.path.isdir(h) and h != "/dev/shm"]
    # Open what must stay reachable before the hidden paths are covered.
    keep = [(p, os.open(p, os.O_PATH)) for p in sorted(cfg["expose"], key=len) if os.path.exists(p)]
    ws_fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for point in mountpoints():
        if under(point, "/proc"):
            continue
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(point))
        except FileNotFoundError:
            continue  # covered by a later mount on top of it: unreachable, so no hole
        except OSError:
            # A mount we may not remount (a locked or vanished one) must not be a writable hole, except the
            # kernel's own pseudo file systems, which are not writable by an unprivileged process anyway.
            if point == "/" or not any(under(point, p) for p in ("/sys", "/dev")):
                raise
    covers = []
    for path in sorted(hide, key=len):
        if any(under(path, c) for c in covers):
            continue
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        covers.append(path)
    bound = []
    for path, fd in keep:
        if any(under(path, c) for c in covers) and not any(under(path, b) for b in bound):
            bound.append(path)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                bind_from_fd(fd, path, writable=False)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
                mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(path))
        os.close(fd)
    bind_from_fd(ws_fd, workspace, writable=True)
    os.close(ws_fd)
    if os.path.isdir("/dev/shm"):
        # POSIX semaphores and shared memory (multiprocessing) need it: a private, small, throw-away one.
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for path in covers:
        mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")


def quiet_stdio() -> None:
    """A relaying process must not hold the program's pipes open (the caller reads them to their end)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def wait_for(pid: int) -> int:
    """Reap children (as a PID 1 must) until `pid` ends; its raw wait status."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        if done == pid:
            return status


def exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status))


def real_root() -> bool:
    """Root of the whole machine (may become `nobody`), not root of a user namespace such as `unshare -r`'s."""
    if os.getuid() != 0:
        return False
    with open("/proc/self/uid_map") as f:
        return f.read().split() == ["0", "0", "4294967295"]


def enter_namespaces(cfg: dict, status_fd: int) -> None:
    """Return in the process that becomes the program; the two above it only relay its end.

    This process stays outside the new PID namespace and exits like the program did. Its child is PID 1 there:
    it builds the file system view, forks the program and reaps; when it exits, the kernel kills everything left
    in the namespace (daemons, setsid escapees). The program is not PID 1, so signals act on it as usual.
    """
    uid, gid = os.getuid(), os.getgid()
    root = real_root()
    if root:
        unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
    else:
        unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
        map_ids(0, uid, 0, gid)
    relay_r, relay_w = os.pipe()
    init = os.fork()
    if init:
        os.close(status_fd)
        os.close(relay_w)
        quiet_stdio()
        status = wait_for(init)
        relayed = os.read(relay_r, 64)
        exit_like(int(relayed) if relayed else status)
    os.close(relay_r)
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    build_filesystem(cfg)
    program = os.fork()
    if program:
        os.close(status_fd)
        quiet_stdio()
        os.write(relay_w, str(wait_for(program)).encode())
        os._exit(0)
    os.close(relay_w)
    build_filesystem(cfg)
    if root:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        # A uid change makes us non-dumpable, which gives /proc/self/* to root; we must write our maps there.
        check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(DUMPABLE)")
        inner_uid, inner_gid = NOBODY, NOBODY
    else:
        # Never root in the last namespace, even when started as root of a user namespace (`unshare -r`).
        inner_uid, inner_gid = uid or 1000, gid or 1000
    euid, egid = os.geteuid(), os.getegid()
    unshare(CLONE_NEWUSER)
    map_ids(inner_uid, euid, inner_gid, egid)


def apply_limits(limits: dict) -> None:
    pairs = {
        resource.RLIMIT_CPU: limits.get("cpu_s"),
        resource.RLIMIT_AS: limits.get("memory_bytes"),
        resource.RLIMIT_NPROC: limits.get("processes"),
        resource.RLIMIT_FSIZE: limits.get("file_size_bytes"),
        resource.RLIMIT_NOFILE: limits.get("open_files"),
        resource.RLIMIT_CORE: 0,
    }
    for which, value in pairs.items():
        if value is not None:
            hard = value + 1 if which == resource.RLIMIT_CPU else value  # SIGXCPU first, SIGKILL a second later
            resource.setrlimit(which, (value, hard))


def fallback_limits(limits: dict) -> dict:
    """Without a user namespace RLIMIT_NPROC counts every process (and thread) of the user, the browser's too."""
    return {key: value for key, value in limits.items() if key != "processes"}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    status_fd = int(sys.argv[2])
    os.set_inheritable(status_fd, False)
    try:
        if cfg["die_with_caller"]:
            # Only for a caller thread that waits for us: the signal fires when the spawning *thread* ends.
            check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if cfg["mode"] == "namespaces":
            enter_namespaces(cfg, status_fd)
        elif cfg["mode"] == "seccomp":
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import _guard

            check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
            _guard.install_seccomp(libc)
        apply_limits(cfg["limits"] if cfg["mode"] == "namespaces" else fallback_limits(cfg["limits"]))
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        if cfg["mode"] == "namespaces":
            check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")  # dies with init
        os.chdir(cfg["workspace"])
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:  # noqa: BLE001 - every setup failure goes back to the caller as text
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EACCES, errno.EINVAL):
            message += " (the kernel refused; namespaces may be disabled here)"
        os.write(status_fd, message.encode("utf-8", "replace"))
        os._exit(126)


if __name__ == "__main__":
    main()
