"""The interpreter loop inside a PythonSession's sandbox, like a Jupyter kernel reduced to what an agent needs.

Its source is handed to `python -c` (so it need not be readable inside the sandbox) with two arguments: a
random token and the number of the descriptor replies go to. Requests come as JSON lines on stdin (which the
cell code then sees as empty); the cell's output goes to the real stdout/stderr, each followed by a sentinel
line with the token so the parent can cut the streams per cell, even output written by C code or a subprocess.
Standard library only.
"""

import ast
import contextlib
import json
import linecache
import math
import os
import resource
import signal
import sys
import traceback

TEXT_CAP = 20_000  # a repr or a traceback longer than this is cut


class CPUTimeExceeded(Exception):
    """The cell used more CPU seconds than its limit allows."""


def on_cpu_limit(signum, frame):
    raise CPUTimeExceeded("the cell used more CPU time than its limit")


def cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def allow_cpu(seconds: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(cpu_used() + seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def clip(text: str, keep_end: bool = False) -> str:
    """Cut a long text; a traceback keeps its end, where the exception is named."""
    if len(text) <= TEXT_CAP:
        return text
    cut = f"\n... [{len(text) - TEXT_CAP} characters cut] ...\n"
    if keep_end:
        return text[: TEXT_CAP // 2] + cut + text[-TEXT_CAP // 2 :]
    return text[:TEXT_CAP] + cut


def format_error(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell"):
        tb = tb.tb_next  # drop this loop's own frames: the user sees their cell only
    return "".join(traceback.format_exception(type(exc), exc, tb))


def run_cell(code: str, number: int, namespace: dict) -> dict:
    filename = f"<cell {number}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        tree = ast.parse(code, filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), namespace)
        if last is None:
            return {"value": None, "error": None}
        value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)
        if value is None:
            return {"value": None, "error": None}
        namespace["_"] = value
        return {"value": clip(repr(value)), "error": None}
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt end the cell, not the session
        return {"value": None, "error": clip(format_error(exc), keep_end=True)}


def main() -> None:
    sentinel = f"\x1e{sys.argv[1]}\x1e\n".encode()
    replies = os.fdopen(int(sys.argv[2]), "w", encoding="utf-8")
    requests = os.fdopen(os.dup(0), "rb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    signal.signal(signal.SIGXCPU, on_cpu_limit)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    sys.argv = [""]
    for number, line in enumerate(requests, start=1):
        request = json.loads(line)
        allow_cpu(request["cpu_s"])
        result = run_cell(request["code"], number, namespace)
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            with contextlib.suppress(Exception):  # the cell may have closed or replaced the stream
                stream.flush()
            os.write(fd, sentinel)
        replies.write(json.dumps(result) + "\n")
        replies.flush()


main()
