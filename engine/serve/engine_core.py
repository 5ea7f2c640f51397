"""The engine core: one LLMEngine and its step loop in a process of its own, fed and read over a pipe.

Why a process: a batch-1 decode step is short, and the HTTP side (request parsing, SSE chunks, uvicorn's event
loop) costs Python time for every token. In one interpreter the two take turns on the GIL, so every token
waited for the event loop and every SSE chunk waited for the step. vLLM's answer, and ours: the API process
owns HTTP and tokenization; this process owns the engine and does nothing but drain its inbox and step.

Protocol (pickled tuples over a `multiprocessing.connection.Connection` on a socketpair):
- in:  ("add", request_id, prompt_ids, SamplingParams) | ("abort", request_id) | ("compile", call_id,
  StructuredOutput) | ("shutdown",)
- out: ("ready", info) | ("failed", message) | ("progress", message) | ("accepted", request_id, error or None)
  | ("compiled", call_id, error or None) | ("step", [RequestOutput], stats) | ("step_failed", message, stats)

One "step" message per engine step carries every output of the step and the engine's stats, so batch 1 costs
one small pickle and one write a token. The core exits on "shutdown", when its pipe closes, or when the API
process dies (a pidfd watch, engine/procs.py), so it can never outlive the server.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

CONN_FD_ENV = "INKSTONE_ENGINE_CORE_FD"
"""The environment variable that names the core's end of the socketpair (an inherited file descriptor)."""


class CoreLoop:
    """Drains the inbox between steps and sends each step's outputs; blocks on the pipe when idle."""

    def __init__(self, engine, conn: Connection):
        self.engine = engine
        self.conn = conn
        self.send_lock = threading.Lock()
        # Grammar compiles take 0.1 s or more for a new schema: off the step loop, one at a time (xgrammar's own
        # compiler uses threads already).
        self.compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inkstone-grammar")
        self.stopping = False

    def send(self, message: tuple) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self.send_lock:
            self.conn.send_bytes(data)

    def run(self) -> None:
        try:
            while not self.stopping:
                busy = self.engine.has_unfinished_requests()
                # Idle: sleep in the kernel until the API process writes (no polling, no CPU).
                if self.conn.poll(0 if busy else None):
                    self.drain()
                    continue  # adds may have queued work, aborts may have ended it: look again
                self.step()
        except (EOFError, OSError):
            log.info("the API process closed the engine core's pipe; stopping")
        finally:
            self.compiler.shutdown(wait=False, cancel_futures=True)

    def drain(self) -> None:
        while not self.stopping and self.conn.poll(0):
            message = pickle.loads(self.conn.recv_bytes())
            kind = message[0]
            if kind == "add":
                self.add(*message[1:])
            elif kind == "abort":
                self.engine.abort_request(message[1])
            elif kind == "compile":
                self.compiler.submit(self.compile, *message[1:])
            elif kind == "shutdown":
                self.stopping = True
            else:
                log.error("engine core: unknown message %r", kind)

    def add(self, request_id: str, prompt: list[int], params) -> None:
        try:
            self.engine.add_request(prompt, params, request_id=request_id)
        except Exception as exc:  # ValueError names the field; anything else is still this request's failure
            error = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            self.send(("accepted", request_id, error))
            return
        self.send(("accepted", request_id, None))

    def compile(self, call_id: int, spec) -> None:
        try:
            self.engine.compile_structured(spec)
            error = None
        except ValueError as exc:
            error = str(exc)
        except Exception as exc:
            log.exception("compiling a constraint failed")
            error = f"{type(exc).__name__}: {exc}"
        self.send(("compiled", call_id, error))

    def step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception as exc:  # a failed step must not hang every waiting client, nor end the core
            log.exception("engine step failed")
            for request_id in list(self.engine.requests):
                try:
                    self.engine.abort_request(request_id)
                except Exception:
                    log.exception("could not abort %s after a failed step", request_id)
            self.engine.pending = []
            self.send(("step_failed", f"engine step failed: {exc}", self.engine.stats()))
            return
        self.send(("step", outputs, self.engine.stats()))


def core_info(engine) -> dict:
    """What the API process needs to know of the engine: its tokenizer (pickled across), limits, stats."""
    return dict(tokenizer=engine.tokenizer, max_model_len=engine.max_model_len, stats=engine.stats(),
                pid=os.getpid())


def serve_core(conn: Connection, model_path: str, config) -> None:
    """Load the engine and run its loop until told to stop; a load failure is reported, not raised."""
    from engine.infer import LLMEngine

    def send(message: tuple) -> None:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        engine = LLMEngine(model_path, config)
    except Exception as exc:
        log.debug("loading the engine failed", exc_info=True)
        text = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
        send(("failed", text))
        return
    loop = CoreLoop(engine, conn)
    graphs = getattr(engine.runner, "cpu_graphs", None)
    if graphs is not None:  # compiles start with the first request of each batch size; the API process says so
        graphs.progress = lambda fraction, message: loop.send(("progress", message))
    loop.send(("ready", core_info(engine)))
    loop.run()


def main() -> None:
    """Entry point of the core process (`python -m engine.serve.engine_core`, started by core_client)."""
    from engine.procs import exit_when_gone

    parent_pid = os.getppid()
    exit_when_gone(parent_pid)  # the server died (even by SIGKILL): so does its engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle; it then stops us
    # A server started inside procs.sigterm_deferred() hands down a blocked SIGTERM; terminate() must work here.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    fd = int(os.environ.pop(CONN_FD_ENV))
    conn = Connection(socket.socket(fileno=fd).detach())
    model_path, config, logging_setup, threads = pickle.loads(conn.recv_bytes())
    level, fmt = logging_setup
    logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT, stream=sys.stderr)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        serve_core(conn, model_path, config)
    finally:
        conn.close()
        logging.shutdown()
        # Not a normal interpreter exit: a background graph compile or a grammar thread must not hold the
        # server's shutdown (the API process kills a core that lingers, but only after a wait).
        os._exit(0)


if __name__ == "__main__":
    main()
