"""A helper process for the short work a page needs that imports torch or transformers (tokenizing a preview),
so the web process never imports them.

Why a process and not a thread: `import transformers` pulls in torch (seconds of import, hundreds of MB, its
own thread pools) for the life of whatever process imports it; the web process must stay small and quick to
answer. Why spawn: a forked child would inherit the web process's event loop, threads and open SQLite
connections mid-flight. Why one long-lived worker started on first use: the first call pays the imports,
every later call (the next preview, another model) is quick, and an app that never previews never starts it.

Functions run here must be module-level (they travel by name) and take and return picklable values; their
exceptions are raised again in the caller. A worker that died (killed, out of memory) is replaced on the next
call.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(os.getpid(),))
        return _pool


def _init_worker(parent_pid: int) -> None:
    from engine.procs import exit_when_gone

    # A Ctrl-C in the terminal reaches the whole process group: the web process stops the worker itself (or the
    # worker sees its pipe close), so it should not die mid-call with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A web process killed outright (kill -9, out of memory) cannot stop it: it goes the moment its parent does.
    # (Not PR_SET_PDEATHSIG: that fires when the thread that spawned the worker ends, a pool thread here.)
    exit_when_gone(parent_pid)


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _submit(func: Callable[..., R], args: tuple, kwargs: dict) -> R:
    pool = _executor()
    try:
        return pool.submit(func, *args, **kwargs).result()
    except BrokenProcessPool:
        _discard(pool)
        raise


def run(func: Callable[..., R], *args, **kwargs) -> R:
    """func(*args, **kwargs) in the worker process; blocks until it returns (call it off the event loop)."""
    try:
        return _submit(func, args, kwargs)
    except BrokenProcessPool:  # the worker died since the last call, or during this one: once more, afresh
        try:
            return _submit(func, args, kwargs)
        except BrokenProcessPool:
            raise RuntimeError(f"the worker process died running {func.__module__}.{func.__qualname__}") from None


def shutdown() -> None:
    """Stop the worker (the app calls this on shutdown); a later run() starts a fresh one.

    The worker is terminated, not only told to stop: a stopping app must not wait for a preview in progress,
    and a worker left to notice its closed pipe can outlive the app by many seconds on a busy machine.
    """
    with _lock:
        pool = _pool
    if pool is not None:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # CPython keeps them there
        _discard(pool)
        for process in processes:
            process.terminate()


# ---- calls the pages make through the worker ------------------------------------------------------------------

def render_chat_template(model_path: str, messages: list[dict]) -> str:
    """The exact text a chat-style eval prompt becomes: the model's own template with the generation prompt, as
    engine.eval.backends.EngineBackend.render_chat builds it (an HF folder, or a .gguf's embedded template)."""
    return run(_render_chat_template, str(model_path), list(messages))


def _render_chat_template(model_path: str, messages: list[dict]) -> str:
    from pathlib import Path

    from transformers import AutoTokenizer

    path = Path(model_path)
    try:
        if path.suffix.lower() == ".gguf":
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:  # not a model folder, or no tokenizer in it
        raise ValueError(f"{model_path}: no usable tokenizer: {e}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("style: the model has no chat template; use the base prompt style")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
