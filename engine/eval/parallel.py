"""Data-parallel evaluation: one run's questions split over N engine processes, as OpenCompass's partitioners do.

One engine per process (one per GPU when there are enough; else CPU processes that share the cores), each an
EngineBackend, driven from here over a pipe. Requests are split so that every context group (the options of
one question) stays on one worker, where the prefix cache shares its context, and neighbouring groups (the
same few-shot prefix) stay together; answers come back in the input order. The identity is the single
engine's, so a run with N workers reads and fills the same response cache and gets the same scores.

Processes: spawned (never forked: a forked CUDA or OpenMP runtime misbehaves), daemonic, and each one kills
itself the moment this process is gone (engine.procs.exit_when_gone), so a kill -9 of the job leaves no
engine behind; they also inherit the job's environment mark, which the job runner sweeps. A cancel, an error
or a dead worker closes the whole pool: the others are asked to stop and killed if they do not, quickly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait as wait_any

from engine.eval.backends import GenParams, folder_identity
from engine.progress import Cancelled, Progress, no_progress

POLL_S = 0.1
"""How often a waiting parent looks at its cancel flag."""
STOP_GRACE_S = 3.0
"""How long a worker asked to stop may take before it is killed."""
PROGRESS_EVERY_S = 0.5
"""A worker reports progress at most this often."""


@dataclass
class WorkerPlan:
    device: str
    """The device the worker's engine runs on ("cpu" or "cuda": one GPU made visible to it)."""
    env: dict[str, str]
    """Environment set first thing in the worker (CUDA_VISIBLE_DEVICES, thread counts)."""
    threads: int | None
    """torch intra-op threads (CPU workers split the cores); None: torch's default."""


def plan_workers(workers: int, device: str, gpu_count: int | None = None) -> list[WorkerPlan]:
    """One worker per GPU when CUDA has at least `workers` devices (and the device allows it), else CPU processes."""
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    if device.startswith("cuda:"):
        raise ValueError(f"device: {device} names one GPU, but {workers} workers take one GPU each; use 'cuda' "
                         "or 'auto'")
    if device != "cpu":
        if gpu_count is None:
            gpu_count = _cuda_device_count()
        if gpu_count >= workers:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpu_count)]
            return [WorkerPlan("cuda", {"CUDA_VISIBLE_DEVICES": ids[i]}, None) for i in range(workers)]
        if device == "cuda":
            raise ValueError(f"workers: {workers} GPU workers asked for, but CUDA has {gpu_count} device(s)")
    cores = int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    threads = max(1, cores // workers)
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return [WorkerPlan("cpu", dict(env), threads) for _ in range(workers)]


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def split_by_context(pairs: list[tuple[str, str]], parts: int) -> list[list[int]]:
    """Indices of pairs per worker: whole context groups, contiguous in first-seen order, of balanced size."""
    groups: dict[str, list[int]] = {}
    for i, (context, _) in enumerate(pairs):
        groups.setdefault(context, []).append(i)
    weights = [len(context) + sum(len(pairs[j][1]) for j in members) for context, members in groups.items()]
    return _contiguous(list(groups.values()), weights, parts)


def _contiguous(units: list[list[int]], weights: list[int], parts: int) -> list[list[int]]:
    total = sum(weights) or 1
    shards: list[list[int]] = [[] for _ in range(parts)]
    before = 0
    for members, weight in zip(units, weights, strict=True):
        middle = before + weight / 2  # a unit goes where its middle falls
        shards[min(parts - 1, int(middle * parts / total))].extend(members)
        before += weight
    return shards


class WorkerFailed(RuntimeError):
    """A worker process died or raised something other than a bad-input ValueError."""


@dataclass
class _Worker:
    index: int
    process: object
    conn: object
    device: str

    def describe(self) -> str:
        return f"eval worker {self.index} (pid {self.process.pid}, {self.device})"

    def how_it_ended(self) -> str:
        self.process.join(1.0)
        code = self.process.exitcode
        if code is None:
            return "stopped answering"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"


class ParallelBackend:
    """The Backend protocol over N EngineBackend processes; `close()` ends them (also on cancel and on errors)."""

    def __init__(self, model_path: str, workers: int = 2, dtype: str = "auto", device: str = "auto",
                 max_model_len: int | None = None, cpu_kv_cache_gb: float = 2.0):
        plans = plan_workers(workers, device)
        self.identity = folder_identity(model_path, dtype)
        self.model_path = model_path
        self._workers: list[_Worker] = []
        self._calls = itertools.count()
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop, self._workers)
        spawn = get_context("spawn")
        engine_kwargs = {"dtype": dtype, "max_model_len": max_model_len, "cpu_kv_cache_gb": cpu_kv_cache_gb}
        try:
            for i, plan in enumerate(plans):
                ours, theirs = spawn.Pipe()
                process = spawn.Process(target=_worker_main, name=f"inkstone-eval-worker-{i}", daemon=True,
                                        args=(theirs, os.getpid(), model_path, plan, engine_kwargs))
                process.start()
                theirs.close()
                self._workers.append(_Worker(i, process, ours, plan.device))
            self._await_ready()
        except BaseException:
            self.close()
            raise

    @property
    def workers(self) -> int:
        """How many engine processes share the work (the runner sends each a full chunk per call)."""
        return len(self._workers)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    # ---- the Backend protocol -----------------------------------------------------------------------

    def render_chat(self, messages: list[dict]) -> str:
        return self._scatter({0: ("render_chat", messages)}, None, None)[0]

    def loglikelihood(self, pairs, progress: Progress = no_progress, cancel: threading.Event | None = None):
        if not pairs:
            return []
        shards = [s for s in split_by_context(pairs, len(self._workers)) if s]
        jobs = {w: ("loglikelihood", [pairs[i] for i in shard]) for w, shard in enumerate(shards)}
        answers = self._scatter(jobs, cancel, _Combined(progress, {w: len(s) for w, s in enumerate(shards)},
                                                        "continuations scored"))
        out: list = [None] * len(pairs)
        for w, shard in enumerate(shards):
            for i, answer in zip(shard, answers[w], strict=True):
                out[i] = tuple(answer)
        return out

    def generate(self, prompts: list[str], params: GenParams, progress: Progress = no_progress,
                 cancel: threading.Event | None = None) -> list[list[str]]:
        if not prompts:
            return []
        shards = [s for s in _contiguous([[i] for i in range(len(prompts))], [1] * len(prompts),
                                         len(self._workers)) if s]
        jobs = {w: ("generate", ([prompts[i] for i in shard], vars(params))) for w, shard in enumerate(shards)}
        answers = self._scatter(jobs, cancel, _Combined(progress, {w: len(s) for w, s in enumerate(shards)},
                                                        "prompts generated"))
        out: list = [None] * len(prompts)
        for w, shard in enumerate(shards):
            for i, texts in zip(shard, answers[w], strict=True):
                out[i] = texts
        return out

    # ---- the pool -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Ask every worker to stop, kill the ones that do not within STOP_GRACE_S; safe to call twice."""
        self._closed = True
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _await_ready(self) -> None:
        waiting = {w.index for w in self._workers}
        while waiting:
            for w, msg in self._receive(waiting, timeout=None):
                if msg[0] == "ready":
                    if msg[1] != self.identity:
                        raise WorkerFailed(f"{w.describe()} loaded a different model identity: {msg[1]}")
                    waiting.discard(w.index)
                elif msg[0] == "error":
                    self._raise_error(w, msg[2], msg[3], while_doing=f"loading {self.model_path}")

    def _scatter(self, jobs: dict[int, tuple[str, object]], cancel: threading.Event | None, progress) -> dict:
        """Send each worker its job, wait for all answers; cancel, an error or a death closes the pool."""
        if self._closed:
            raise RuntimeError("the data-parallel backend is closed (after a cancel, an error or close())")
        call = next(self._calls)
        try:
            for index, (op, payload) in jobs.items():
                worker = self._workers[index]
                try:
                    worker.conn.send((op, call, payload))
                except OSError:
                    raise WorkerFailed(f"{worker.describe()} {worker.how_it_ended()}") from None
            results: dict[int, object] = {}
            while len(results) < len(jobs):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("cancelled")
                for worker, msg in self._receive(set(jobs) - set(results), timeout=POLL_S):
                    if len(msg) < 2 or msg[1] != call:
                        continue  # a late message of an earlier call
                    if msg[0] == "result":
                        results[worker.index] = msg[2]
                    elif msg[0] == "progress" and progress is not None:
                        progress.update(worker.index, msg[2])
                    elif msg[0] == "error":
                        self._raise_error(worker, msg[2], msg[3], while_doing=op)
            return results
        except BaseException:
            self.close()
            raise

    def _receive(self, indices: set[int], timeout: float | None):
        """(worker, message) pairs that arrived within timeout; a worker that ended raises WorkerFailed."""
        watched = {}
        for i in indices:
            w = self._workers[i]
            watched[w.conn] = w
            watched[w.process.sentinel] = w
        got = []
        for ready in wait_any(list(watched), timeout):
            w = watched[ready]
            if ready is w.conn:
                try:
                    got.append((w, w.conn.recv()))
                except (EOFError, OSError):
                    raise WorkerFailed(f"{w.describe()} {w.how_it_ended()}") from None
            elif not w.conn.poll():  # ended, and said nothing more
                raise WorkerFailed(f"{w.describe()} {w.how_it_ended()}")
        return got

    def _raise_error(self, worker: _Worker, kind: str, message: str, while_doing: str) -> None:
        if kind == "ValueError":  # bad input: the same message a single engine gives
            raise ValueError(message)
        if kind == "Cancelled":
            raise Cancelled(message)
        raise WorkerFailed(f"{worker.describe()} failed while {while_doing}: {kind}: {message}")


class _Combined:
    """Per-worker progress fractions folded into one, weighted by each worker's share of the requests."""

    def __init__(self, progress: Progress, sizes: dict[int, int], noun: str):
        self.progress, self.sizes, self.noun = progress, sizes, noun
        self.total = sum(sizes.values()) or 1
        self.done = dict.fromkeys(sizes, 0.0)

    def update(self, index: int, fraction: float) -> None:
        self.done[index] = fraction * self.sizes[index]
        done = sum(self.done.values())
        self.progress(fraction=done / self.total, message=f"{round(done)}/{self.total} {self.noun} "
                                                          f"({len(self.sizes)} workers)")


def _stop(workers: list[_Worker]) -> None:
    """Closing message to every worker, then the ones still alive after the grace period are killed."""
    for w in workers:
        with contextlib.suppress(OSError):
            w.conn.send(("close", -1, None))
    deadline = time.monotonic() + STOP_GRACE_S
    for w in workers:
        w.process.join(max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.process.is_alive():
            w.process.kill()
            w.process.join(5.0)
        w.conn.close()


# ---- the worker process ---------------------------------------------------------------------------------


def _worker_main(conn, parent_pid: int, model_path: str, plan: WorkerPlan, engine_kwargs: dict) -> None:
    """One engine: load it, say ready, then answer requests until told to close (or the parent is gone)."""
    os.environ.update(plan.env)  # before torch starts CUDA or its thread pools
    from engine.procs import exit_when_gone

    exit_when_gone(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    cancel = threading.Event()
    try:
        import torch

        if plan.threads:
            torch.set_num_threads(plan.threads)
        from engine.eval.backends import EngineBackend

        backend = EngineBackend(model_path, device=plan.device, **engine_kwargs)
    except BaseException as e:  # noqa: BLE001 - everything is reported to the parent
        conn.send(("error", -1, type(e).__name__, str(e)))
        return
    conn.send(("ready", backend.identity))
    inbox: list[tuple] = []
    arrived = threading.Condition()

    def listen() -> None:  # reads the pipe while the main thread computes, so close and cancel land mid-call
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("close", -1, None)
            if msg[0] == "close":
                cancel.set()
            with arrived:
                inbox.append(msg)
                arrived.notify()
            if msg[0] == "close":
                return

    threading.Thread(target=listen, name="eval-worker-inbox", daemon=True).start()
    while True:
        with arrived:
            arrived.wait_for(lambda: inbox)
            op, call, payload = inbox.pop(0)
        if op == "close":
            return
        try:
            conn.send(("result", call, _answer(backend, op, call, payload, conn, cancel)))
        except BaseException as e:  # noqa: BLE001 - the parent decides what an error means
            conn.send(("error", call, type(e).__name__, str(e)))


def _answer(backend, op: str, call: int, payload, conn, cancel: threading.Event):
    last = [0.0]

    def progress(fraction=None, message=None, metrics=None, step=None) -> None:
        now = time.monotonic()
        if fraction is not None and (now - last[0] >= PROGRESS_EVERY_S or fraction >= 1):
            last[0] = now
            conn.send(("progress", call, float(fraction)))

    if op == "loglikelihood":
        return [tuple(a) for a in backend.loglikelihood(payload, progress, cancel)]
    if op == "generate":
        prompts, params = payload
        return backend.generate(prompts, GenParams(**{**params, "stop": tuple(params["stop"])}), progress, cancel)
    if op == "render_chat":
        return backend.render_chat(payload)
    raise ValueError(f"op: unknown request {op!r}")
