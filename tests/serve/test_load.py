"""Many requests at once, clients that hang up, and /metrics — on a server that runs 2 sequences at a time."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.serve.conftest import SERVED_NAME, start_server


@pytest.fixture(scope="module")
def narrow(tiny_model_dir):
    """At most 2 running sequences: the rest of a burst must wait in the engine's queue."""
    thread, served = start_server(tiny_model_dir("llama"), max_num_seqs=2)
    yield served
    thread.stop()


def wait_idle(served, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = served.engine.stats()
        if stats["running"] == 0 and stats["waiting"] == 0:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"engine still busy: {served.engine.stats()}")


def test_burst_of_8_is_queued_and_all_complete(narrow):
    async def burst():
        client = openai.AsyncOpenAI(base_url=narrow.base_url + "/v1", api_key="x", max_retries=0, timeout=120)
        chats = [client.chat.completions.create(
            model=SERVED_NAME, messages=[{"role": "user", "content": f"Question {i}?"}], max_tokens=12,
            extra_body={"ignore_eos": True}) for i in range(6)]
        streams = [client.completions.create(model=SERVED_NAME, prompt=f"Story {i}:", max_tokens=12, stream=True,
                                             extra_body={"ignore_eos": True}) for i in range(2)]

        async def drain(stream_call):
            return [chunk async for chunk in await stream_call]

        return await asyncio.gather(*chats, *(drain(s) for s in streams))

    results = asyncio.run(burst())
    for reply in results[:6]:
        assert reply.usage.completion_tokens == 12 and reply.choices[0].finish_reason == "length"
    for chunks in results[6:]:
        assert chunks[-1].choices[0].finish_reason == "length"
    assert wait_idle(narrow)["kv_blocks_used"] == 0


def aborted(served) -> int:
    return served.engine.metrics.finished["abort"]


def wait_aborted(served, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while aborted(served) < count:
        assert time.monotonic() < deadline, "the request was not aborted"
        time.sleep(0.05)


def test_stream_disconnect_aborts_the_request(narrow):
    before, tokens_before = aborted(narrow), narrow.engine.stats()["generation_tokens"]
    body = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "go"}], "max_tokens": 400,
            "stream": True, "ignore_eos": True}
    with httpx.stream("POST", narrow.base_url + "/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert next(lines) == ""
    wait_aborted(narrow, before + 1)
    stats = wait_idle(narrow)
    assert stats["kv_blocks_used"] == 0 and stats["generation_tokens"] - tokens_before < 400


def test_non_stream_disconnect_aborts_the_request(narrow):
    before = aborted(narrow)
    body = {"model": SERVED_NAME, "prompt": "go", "max_tokens": 400, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(narrow.base_url + "/v1/completions", json=body, timeout=httpx.Timeout(30, read=0.3))
    wait_aborted(narrow, before + 1)
    assert wait_idle(narrow)["kv_blocks_used"] == 0


def test_metrics_parse_and_count(narrow):
    parser = pytest.importorskip("prometheus_client.parser")
    client = openai.OpenAI(base_url=narrow.base_url + "/v1", api_key="x", max_retries=0)
    for _ in range(2):
        client.completions.create(model=SERVED_NAME, prompt="The same prompt, long enough to fill a block " * 2,
                                  max_tokens=2)
    response = httpx.get(narrow.base_url + "/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {s.name + str(sorted(s.labels.items())): s.value
               for family in parser.text_string_to_metric_families(response.text) for s in family.samples}
    assert samples["inkstone_num_requests_running[]"] == 0
    assert samples["inkstone_prompt_tokens_total[]"] > 0
    assert samples["inkstone_generation_tokens_total[]"] > 0
    assert samples["inkstone_prefix_cache_hit_tokens_total[]"] >= 16
    assert samples["inkstone_e2e_request_latency_seconds_count[]"] >= 2
    assert samples["inkstone_time_to_first_token_seconds_count[]"] >= 2
    assert samples["inkstone_request_success_total[('finish_reason', 'length')]"] >= 2


def test_idle_server_does_not_spin(narrow):
    wait_idle(narrow)
    time.sleep(0.2)
    cpu = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - cpu < 0.2  # the step thread sleeps on its event, it does not poll
