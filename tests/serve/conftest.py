"""A real model server on loopback for the tests of a module: tiny random llama, its engine core in a process of
its own (as `inkstone serve` runs it), uvicorn in a thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

SERVED_NAME = "tiny-llama"
API_KEY = "sk-test-key"


@dataclass
class Served:
    base_url: str
    """http://127.0.0.1:PORT (no /v1)."""
    app: object
    """The FastAPI app; app.state.engine is the client of the engine core behind it."""
    model_dir: str
    """The HF folder served."""

    @property
    def engine(self):
        """The EngineCoreClient: stats(), metrics, tokenizer, and the core's process."""
        return self.app.state.engine

    @property
    def tokenizer(self):
        return self.engine.tokenizer


class ServerThread:
    """uvicorn on 127.0.0.1 with a free port, in a daemon thread; stop() shuts it down and joins."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def engine_config(**overrides):
    from engine.infer import EngineConfig

    config = dict(device="cpu", dtype="float32", max_model_len=512, num_kv_blocks=256, block_size=16)
    config.update(overrides)
    return EngineConfig(**config)


def tiny_engine(model_dir, **overrides):
    """An engine in this process (offline generate, references for what the server returns)."""
    from engine.infer import LLMEngine

    return LLMEngine(str(model_dir), engine_config(**overrides))


def start_core(model_dir, **overrides):
    """An engine core process over model_dir with the tests' small config; its client."""
    from engine.serve.core_client import EngineCoreClient

    return EngineCoreClient(str(model_dir), engine_config(**overrides))


def start_server(model_dir, api_key=None, **engine_overrides):
    from engine.serve.app import create_app

    app = create_app(start_core(model_dir, **engine_overrides), SERVED_NAME, api_key=api_key)
    thread = ServerThread(app)
    return thread, Served(base_url=f"http://127.0.0.1:{thread.port}", app=app, model_dir=str(model_dir))


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    """A server for the tiny llama without an API key, shared by the module's tests."""
    thread, served = start_server(tiny_model_dir("llama"))
    yield served
    thread.stop()


@pytest.fixture(scope="module")
def served_with_key(tiny_model_dir):
    """A server for the tiny llama that wants `Authorization: Bearer sk-test-key`."""
    thread, served = start_server(tiny_model_dir("llama"), api_key=API_KEY)
    yield served
    thread.stop()


@pytest.fixture
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=served.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
