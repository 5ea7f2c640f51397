"""The API process's side of the engine core: start it, send it requests, stream its outputs into asyncio.

`EngineCoreClient` starts `engine_core` as a child process (a fresh interpreter, so it shares no GIL, no
thread pools and no locks with this one), waits until its model is loaded, then talks to it over a
socketpair. Outputs are read on the event loop itself (`loop.add_reader` on the pipe): no thread in this
process wakes per token, and each step's outputs go straight into the asyncio queues of their requests.

Every request stream is guaranteed to end: on finish, on abort (a synthetic "abort" output for each of its
samples not yet finished), or with a synthetic "error" output when a step fails, the server shuts down or the
core process dies. A dead core turns every later request into `EngineUnavailable` (a 503 with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from engine.infer import RequestOutput, SamplingParams
from engine.serve.engine_core import CONN_FD_ENV
from engine.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)

CORE_GONE = "the engine core process is not running"
"""Start of the error of every request a dead core leaves behind (the server answers them with 503)."""
STOP_SECONDS = 30.0
"""How long shutdown waits for the core to exit before it kills it."""


class EngineUnavailable(RuntimeError):
    """The engine core process is gone (crashed, killed, or stopped): no request can be served."""


@dataclass
class _Live:
    """What the client keeps for a request the core is serving."""

    loop: asyncio.AbstractEventLoop
    outputs: asyncio.Queue
    n: int
    arrival: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finished: set[int] = field(default_factory=set)


class RequestStream:
    """Async iterator over one request's RequestOutputs; it ends once each of its n samples has finished."""

    def __init__(self, request_id: str, outputs: asyncio.Queue, n: int):
        self.request_id = request_id
        self._outputs = outputs
        self._open = set(range(n))

    @property
    def done(self) -> bool:
        return not self._open

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if not self._open:
            raise StopAsyncIteration
        out: RequestOutput = await self._outputs.get()
        if out.finished:
            self._open.discard(out.index)
        return out


def _logging_setup() -> tuple[int, str | None]:
    """The root logger's level and format, so the core logs (to the same stderr) as this process does."""
    root = logging.getLogger()
    handler = next(iter(root.handlers), None)
    fmt = getattr(getattr(handler, "formatter", None), "_fmt", None)
    return root.level, fmt


def _start_core_process(model_path: str, config) -> tuple[subprocess.Popen, Connection]:
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    env[CONN_FD_ENV] = str(theirs.fileno())
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the `engine` package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.pop("PYTEST_CURRENT_TEST", None)
    # Between steps only the core's main thread works (scheduling, sampling, sending), and by default torch's
    # OpenMP workers spin meanwhile for hundreds of microseconds, on the cores this API process and its clients
    # need to stream the last token. Spinning ~10k rounds still bridges the gaps between one step's kernels;
    # batch-1 streaming on a 2-core CPU went from 0.94x to 1.01x llama.cpp's rate (measured alternately).
    env.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        process = subprocess.Popen([sys.executable, "-m", "engine.serve.engine_core"], env=env,
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    # The core computes with as many threads as this process would have (a caller's torch.set_num_threads too).
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    conn.send_bytes(pickle.dumps((model_path, config, _logging_setup(), threads)))
    return process, conn


class EngineCoreClient:
    """The engine, as the API process sees it: started at construction, read on an event loop after start()."""

    def __init__(self, model_path: str, config, progress=None, metrics: ServerMetrics | None = None):
        """Start the core and load the model in it (blocking); RuntimeError with the core's reason on failure.

        progress(message) is told what the core reports later (compiles starting and ending).
        """
        self.metrics = metrics or ServerMetrics()
        self.progress = progress
        self.process, self._conn = _start_core_process(model_path, config)
        self._send_lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._accepting: dict[str, asyncio.Future] = {}
        self._compiling: dict[int, asyncio.Future] = {}
        self._call_ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dead: str | None = None
        self._closed = False
        try:
            info = self._wait_ready(model_path)
        except BaseException:
            self._kill()
            raise
        self.tokenizer = info["tokenizer"]
        self.max_model_len: int = info["max_model_len"]
        self._stats: dict = info["stats"]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self._dead is None and self.process.poll() is None

    @property
    def unavailable_reason(self) -> str | None:
        """Why requests cannot be served (the core died or the server stopped); None while it serves."""
        if self._dead is None and self.process.poll() is not None:
            self._dead = self._exit_message()
        return self._dead

    def _wait_ready(self, model_path: str) -> dict:
        while True:
            if self._conn.poll(0.2):
                try:
                    message = pickle.loads(self._conn.recv_bytes())
                except (EOFError, OSError):
                    raise RuntimeError(f"loading {model_path} failed: {self._exit_message()}") from None
                if message[0] == "ready":
                    return message[1]
                if message[0] == "failed":
                    raise RuntimeError(f"could not load {model_path}: {message[1]}")
                if message[0] == "progress" and self.progress is not None:
                    self.progress(message[1])
            elif self.process.poll() is not None:
                raise RuntimeError(f"loading {model_path} failed: {self._exit_message()}")

    def _exit_message(self) -> str:
        code = self.process.poll()
        if code is None:
            return f"{CORE_GONE} (its pipe closed)"
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return f"{CORE_GONE} (it ended with {how}; the server log has its last words)"

    def stats(self) -> dict:
        """The engine's stats as of its last step."""
        return dict(self._stats)

    # ---- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Read the core's outputs on the running event loop (called from the app's startup)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._conn.fileno(), self._on_readable)
        if self.process.poll() is not None:
            self._on_core_gone()

    def shutdown(self) -> None:
        """Stop the core (waiting up to STOP_SECONDS, then killing it); requests in flight end with an error."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._conn.fileno())
        with contextlib.suppress(OSError, ValueError):
            self._send(("shutdown",))
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("the engine core did not stop within %.0f s; killing it", STOP_SECONDS)
            self._kill()
        self._dead = self._dead or f"{CORE_GONE} (the server is shutting down)"
        self._end_all("the server is shutting down")
        with contextlib.suppress(OSError):
            self._conn.close()

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_SECONDS)

    # ---- requests ----------------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        reason = self.unavailable_reason
        if reason is not None:
            raise EngineUnavailable(reason)
        if self._loop is None:
            raise RuntimeError("the engine client is not started; call start() from the event loop first")

    def _send(self, message: tuple) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._conn.send_bytes(data)

    def _send_or_fail(self, message: tuple) -> None:
        try:
            self._send(message)
        except (OSError, ValueError):
            self._on_core_gone()
            raise EngineUnavailable(self.unavailable_reason or CORE_GONE) from None

    async def add_request(self, prompt: list[int], params: SamplingParams,
                          request_id: str | None = None) -> RequestStream:
        """Queue a request; raises the engine's ValueError (naming the field) if it refuses it."""
        self._check_alive()
        loop = asyncio.get_running_loop()
        request_id = request_id or uuid.uuid4().hex
        live = _Live(loop=loop, outputs=asyncio.Queue(), n=params.n)
        accepted = loop.create_future()
        self._accepting[request_id] = accepted
        self._live[request_id] = live
        self._send_or_fail(("add", request_id, prompt, params))
        try:
            await accepted
        except asyncio.CancelledError:
            # The caller went away while the request was being admitted: do not leave it running.
            self.abort(request_id)
            raise
        except BaseException:
            self._live.pop(request_id, None)
            raise
        return RequestStream(request_id, live.outputs, params.n)

    def abort(self, request_id: str) -> None:
        """Abort a request (no-op when it already finished); its stream ends with "abort" outputs."""
        if request_id not in self._live:
            return
        with contextlib.suppress(OSError, ValueError):
            self._send(("abort", request_id))
        self._end(request_id, "abort", None)

    async def compile_structured(self, spec) -> None:
        """Compile (or find cached) spec's grammar in the core; ValueError naming what it does not support."""
        self._check_alive()
        call_id = next(self._call_ids)
        done = asyncio.get_running_loop().create_future()
        self._compiling[call_id] = done
        self._send_or_fail(("compile", call_id, spec))
        try:
            await done
        finally:
            self._compiling.pop(call_id, None)

    # ---- the reader, on the event loop -------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            while self._conn.poll(0):
                self._dispatch(pickle.loads(self._conn.recv_bytes()))
        except (EOFError, OSError):
            self._on_core_gone()

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "step":
            _, outputs, self._stats = message
            for out in outputs:
                self._deliver(out)
        elif kind == "accepted":
            _, request_id, error = message
            future = self._accepting.pop(request_id, None)
            if future is not None and not future.done():
                _settle(future, None if error is None else ValueError(error))
            if error is not None:
                self._live.pop(request_id, None)
        elif kind == "compiled":
            _, call_id, error = message
            future = self._compiling.get(call_id)
            if future is not None and not future.done():
                _settle(future, None if error is None else ValueError(error))
        elif kind == "step_failed":
            _, error, self._stats = message
            self._end_all(error)
        elif kind == "progress" and self.progress is not None:  # the core logged it already (same stderr)
            self.progress(message[1])

    def _deliver(self, out: RequestOutput) -> None:
        live = self._live.get(out.request_id)
        if live is None:  # already aborted or ended here: its stream is closed
            return
        if live.first_token_at is None and out.new_token_ids:
            live.first_token_at = time.monotonic()
        if out.finished:
            live.finished.add(out.index)
        _put(live, out)
        if len(live.finished) == live.n:
            self._forget(out.request_id, out.finish_reason or "stop")

    def _on_core_gone(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._conn.fileno())
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)  # it closed its pipe as it died: let the exit status land
        self._dead = self._dead or self._exit_message()
        if not self._closed:
            log.error("%s", self._dead)
        self._end_all(self._dead)

    def _end_all(self, error: str) -> None:
        for future in [*self._accepting.values(), *self._compiling.values()]:
            if not future.done():
                _settle(future, EngineUnavailable(error) if error.startswith(CORE_GONE) else RuntimeError(error))
        self._accepting.clear()
        for request_id in list(self._live):
            self._end(request_id, "error", error)

    def _end(self, request_id: str, reason: str, error: str | None) -> None:
        """Close a request's stream with a synthetic final output for each sample not yet finished."""
        live = self._live.get(request_id)
        if live is None:
            return
        for index in range(live.n):
            if index not in live.finished:
                _put(live, RequestOutput(request_id=request_id, index=index, new_token_ids=[], new_text="",
                                         finished=True, finish_reason=reason, error=error))
        self._forget(request_id, reason)

    def _forget(self, request_id: str, reason: str) -> None:
        live = self._live.pop(request_id)
        ttft = None if live.first_token_at is None else live.first_token_at - live.arrival
        self.metrics.observe_finished(reason, time.monotonic() - live.arrival, ttft)


def _put(live: _Live, out: RequestOutput) -> None:
    """Hand an output to its reader: directly on its own loop, else through that loop (another thread's)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is live.loop:
        live.outputs.put_nowait(out)
    else:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody listens any more
            live.loop.call_soon_threadsafe(live.outputs.put_nowait, out)


def _settle(future: asyncio.Future, exc: BaseException | None) -> None:
    def settle() -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is future.get_loop():
        settle()
    else:
        with contextlib.suppress(RuntimeError):
            future.get_loop().call_soon_threadsafe(settle)
