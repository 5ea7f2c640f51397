"""Drive an LLMEngine from asyncio: one thread owns the engine, requests talk to it through queues.

`LLMEngine.step()` is not thread-safe, and a step is long blocking compute, so it cannot run on the event loop.
One dedicated thread runs the step loop; add/abort go to it through an inbox queue and are applied between
steps; each step's outputs go back to the right request's asyncio queue with `loop.call_soon_threadsafe`.
When nothing is in flight the thread sleeps on an event (no busy spin). The engine's scheduler queues requests
beyond what fits in a step (`waiting`), so an overload is queued, never dropped.

Every request stream is guaranteed to end: on finish, on abort (a synthetic "abort" output for each of its
samples not yet finished), or when a step raises or the engine shuts down (a synthetic "error" output).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

from engine.infer import RequestOutput, SamplingParams
from engine.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)


@dataclass
class _Live:
    """What the engine thread keeps for a request it is serving."""

    loop: asyncio.AbstractEventLoop
    """The event loop of the handler that reads the request's outputs."""
    outputs: asyncio.Queue
    """Where this request's RequestOutputs go, in order."""
    n: int
    """How many samples the request has; it is done when all n finished."""
    arrival: float = field(default_factory=time.monotonic)
    """When the request arrived (for latency metrics)."""
    first_token_at: float | None = None
    """When its first generated token came out."""
    finished: set[int] = field(default_factory=set)
    """Indices of samples already finished."""


@dataclass
class _Add:
    prompt: str | list[int]
    params: SamplingParams
    request_id: str
    live: _Live
    accepted: asyncio.Future


@dataclass
class _Abort:
    request_id: str


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


class AsyncEngine:
    """Owns an LLMEngine and its step thread; safe to call from any event loop."""

    def __init__(self, engine, metrics: ServerMetrics | None = None):
        self.engine = engine
        self.metrics = metrics or ServerMetrics()
        # The handlers' own copy: the step thread detokenizes with the engine's while handlers encode and
        # render templates, and a Rust tokenizer shared across threads can fail with "Already borrowed".
        self.tokenizer = copy.deepcopy(engine.tokenizer)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._live: dict[str, _Live] = {}
        self._stats: dict = engine.stats()
        self._thread: threading.Thread | None = None

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def start(self) -> None:
        """Start the step thread (a second call does nothing)."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="inkstone-engine-step", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop the step thread; requests still in flight end with an "error" output."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._thread = None

    def stats(self) -> dict:
        """The engine's stats as of its last step or idle moment (reading them live is not thread-safe)."""
        return dict(self._stats)

    async def add_request(self, prompt: str | list[int], params: SamplingParams,
                          request_id: str | None = None) -> RequestStream:
        """Queue a request; raises the engine's ValueError (naming the field) if it refuses it."""
        if self._thread is None:
            raise RuntimeError("the engine is not running; call start() first")
        loop = asyncio.get_running_loop()
        request_id = request_id or uuid.uuid4().hex
        live = _Live(loop=loop, outputs=asyncio.Queue(), n=params.n)
        accepted = loop.create_future()
        self._inbox.put(_Add(prompt, params, request_id, live, accepted))
        self._wake.set()
        try:
            await accepted
        except asyncio.CancelledError:
            # The caller went away while the request was being admitted: do not leave it running.
            self.abort(request_id)
            raise
        return RequestStream(request_id, live.outputs, params.n)

    def abort(self, request_id: str) -> None:
        """Abort a request (no-op when it already finished); its stream ends with "abort" outputs."""
        self._inbox.put(_Abort(request_id))
        self._wake.set()

    # ---- the step thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            # Clear before draining: an add that lands after the drain sets the event again, so no lost wake-up.
            self._wake.clear()
            try:
                self._run_once()
            except Exception as exc:  # a failed step must not hang every waiting client, nor kill this thread
                log.exception("engine step failed")
                self._end_all("error", f"engine step failed: {exc}")
        self._end_all("error", "the server is shutting down")
        self._stats = self.engine.stats()

    def _run_once(self) -> None:
        if self._drain_inbox():
            self._stats = self.engine.stats()
        if self._stopping:
            return
        if not self.engine.has_unfinished_requests():
            self._wake.wait()
            return
        for out in self.engine.step():
            self._deliver(out)
        self._stats = self.engine.stats()

    def _drain_inbox(self) -> bool:
        """Apply queued adds and aborts; True if there were any."""
        drained = False
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return drained
            drained = True
            if isinstance(item, _Add):
                self._admit(item)
            elif item.request_id in self._live:
                self.engine.abort_request(item.request_id)
                self._end(item.request_id, "abort", None)

    def _admit(self, item: _Add) -> None:
        try:
            self.engine.add_request(item.prompt, item.params, request_id=item.request_id)
        except Exception as exc:
            self._call(item.live, _resolve, item.accepted, exc)
            return
        self._live[item.request_id] = item.live
        self._call(item.live, _resolve, item.accepted, None)

    def _deliver(self, out: RequestOutput) -> None:
        live = self._live.get(out.request_id)
        if live is None:  # already aborted or ended: its stream is closed
            return
        if live.first_token_at is None and out.new_token_ids:
            live.first_token_at = time.monotonic()
        if out.finished:
            live.finished.add(out.index)
        self._call(live, live.outputs.put_nowait, out)
        if len(live.finished) == live.n:
            self._forget(out.request_id, out.finish_reason or "stop")

    def _end(self, request_id: str, reason: str, error: str | None) -> None:
        """Close a request's stream with a synthetic final output for each sample not yet finished."""
        live = self._live[request_id]
        for index in range(live.n):
            if index not in live.finished:
                final = RequestOutput(request_id=request_id, index=index, new_token_ids=[], new_text="",
                                      finished=True, finish_reason=reason, error=error)
                self._call(live, live.outputs.put_nowait, final)
        self._forget(request_id, reason)

    def _end_all(self, reason: str, error: str) -> None:
        for request_id in list(self._live):
            try:
                self.engine.abort_request(request_id)
            except Exception:
                log.exception("could not abort %s after a failure", request_id)
            self._end(request_id, reason, error)

    def _forget(self, request_id: str, reason: str) -> None:
        live = self._live.pop(request_id)
        now = time.monotonic()
        ttft = None if live.first_token_at is None else live.first_token_at - live.arrival
        self.metrics.observe_finished(reason, now - live.arrival, ttft)

    @staticmethod
    def _call(live: _Live, fn, *args) -> None:
        # A RuntimeError means the reader's loop is closed: nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            live.loop.call_soon_threadsafe(fn, *args)


def _resolve(future: asyncio.Future, exc: BaseException | None) -> None:
    if future.done():  # the waiting handler was cancelled
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
