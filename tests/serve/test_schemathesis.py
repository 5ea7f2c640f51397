"""Schemathesis against the server's own /openapi.json: generated valid and invalid requests never get a 5xx.

The server is real (tiny llama, uvicorn on loopback); schemathesis reads the schema over HTTP and sends its
cases with `requests`. Each operation runs as a Hypothesis test over schemathesis' strategy for it, once with
requests that fit the schema and once with requests that do not: bounded (a few dozen examples each) and
repeatable (derandomized, no example database). The context is short (64 tokens) and the default output cap
small, so a generated `n: 64` costs little. Every 4xx must also be in OpenAI's error shape.

Schemathesis' own pytest plugin (`@schema.parametrize()`) does not run under pytest 9, so the strategies are
driven by Hypothesis directly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from engine.serve.limits import ServeLimits
from tests.serve.conftest import SERVED_NAME, ServerThread, start_core

OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
]
EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzzed_server(tiny_model_dir):
    from engine.serve.app import create_app

    engine = start_core(tiny_model_dir("llama"), max_model_len=64, num_kv_blocks=512, block_size=16)
    app = create_app(engine, SERVED_NAME, limits=ServeLimits(default_max_tokens=8))
    thread = ServerThread(app)
    yield f"http://127.0.0.1:{thread.port}"
    thread.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    return schemathesis.openapi.from_url(fuzzed_server + "/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# A GET without parameters has no request that breaks its schema: only the POSTs get negative cases.
CASES = [(m, p, POSITIVE) for m, p in OPERATIONS] + [(m, p, NEGATIVE) for m, p in OPERATIONS if m == "POST"]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_errors(api_schema, fuzzed_server, method, path, mode):
    operation = api_schema[path][method]
    statuses = []

    @settings(
        max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        response = case.call(base_url=fuzzed_server, timeout=60)
        statuses.append(response.status_code)
        assert response.status_code < 500, f"{method} {path} {case.body!r} -> {response.text[:500]}"
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, response.text

    check()
    assert statuses, "no request was sent"
