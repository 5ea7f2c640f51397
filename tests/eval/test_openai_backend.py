"""Evaluating through an OpenAI-compatible URL: our own server on loopback with the real `openai` client; its
echoed log-probabilities give the same continuation scores as the in-process engine."""

from __future__ import annotations

import pytest

from engine.eval.backends import EngineBackend, GenParams
from engine.eval.openai_backend import OpenAIBackend
from tests.serve.conftest import start_server


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    thread, served = start_server(tiny_model_dir("llama"))
    yield served
    thread.stop()


def test_url_backend_scores_like_the_engine_and_generates(server, tiny_model_dir):
    backend = OpenAIBackend(server.base_url)
    assert backend.model == "tiny-llama"
    pairs = [("Question: what colour is the sky?\nAnswer:", " blue"), ("Question: 2+2?\nAnswer: ", "4 apples"),
             ("天空是", "蓝色的")]
    local = EngineBackend(str(tiny_model_dir("llama")), dtype="float32", device="cpu", cpu_kv_cache_gb=0.05)
    for (lp, greedy), (ref, ref_greedy) in zip(backend.loglikelihood(pairs), local.loglikelihood(pairs), strict=True):
        assert lp == pytest.approx(ref, abs=2e-3) and greedy == ref_greedy
    [[text]] = backend.generate(["Question: 2+2?\nAnswer:"], GenParams(max_tokens=5))
    assert isinstance(text, str)
    [[chat]] = backend.generate([backend.render_chat([{"role": "user", "content": "hi"}])], GenParams(max_tokens=4))
    assert isinstance(chat, str)
