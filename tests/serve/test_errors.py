"""Errors leave in OpenAI's shape with the right status and `param`; a failing model never hangs a client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.serve.conftest import API_KEY, SERVED_NAME, start_server

MESSAGES = [{"role": "user", "content": "hi"}]


def post(served, path: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(served.base_url + path, json=body, timeout=60, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(("body", "param"), [
    ({"temperature": 5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"stop": 3}, "stop"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"max_tokens": 10_000}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "word " * 600}]}, "messages"),
])
def test_bad_chat_params_are_400_naming_the_field(served, body, param):
    error = error_of(post(served, "/v1/chat/completions", {"model": SERVED_NAME, "messages": MESSAGES, **body}), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": "word " * 600}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [10**6]}, "prompt"),
    ({"logprobs": 50}, "logprobs"),
    ({"suffix": "x"}, "suffix"),
    ({"max_tokens": -1}, "max_tokens"),
])
def test_bad_completion_params_are_400_naming_the_field(served, body, param):
    error = error_of(post(served, "/v1/completions", {"model": SERVED_NAME, "prompt": "hi", **body}), 400)
    assert error["param"] == param


def test_context_length_error_code(served):
    error = error_of(post(served, "/v1/completions", {"model": SERVED_NAME, "prompt": "word " * 600}), 400)
    assert error["code"] == "context_length_exceeded" and "512" in error["message"]


def test_not_json_is_400_naming_no_param(served):
    response = httpx.post(served.base_url + "/v1/chat/completions", content=b"{nope", timeout=30,
                          headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert error["param"] is None and "line 1 column 2" in error["message"]


def test_unknown_model_is_404_through_the_client(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert err.value.status_code == 404 and err.value.code == "model_not_found" and err.value.param == "model"


def test_bad_param_through_the_client(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=SERVED_NAME, messages=MESSAGES, temperature=3)
    assert err.value.param == "temperature"


def test_api_key(served_with_key):
    url = served_with_key.base_url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        error = error_of(httpx.get(url + "/v1/models", headers=headers, timeout=30), 401)
        assert error["code"] == "invalid_api_key"
    assert httpx.get(url + "/health", timeout=30).status_code == 200
    client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
    assert client.models.list().data[0].id == SERVED_NAME
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="sk-wrong", max_retries=0).completions.create(
            model=SERVED_NAME, prompt="hi", max_tokens=1)


@pytest.fixture(scope="module")
def nan_served(tiny_model_dir, tmp_path_factory):
    """A server over a copy of the tiny llama whose output layer is NaN, so sampling fails."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = tiny_model_dir("llama")
    out = tmp_path_factory.mktemp("nan-llama")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    thread, served = start_server(out)
    yield served
    thread.stop()


def test_sampling_failure_is_a_500_or_a_stream_error(nan_served):
    client = openai.OpenAI(base_url=nan_served.base_url + "/v1", api_key="x", max_retries=0, timeout=60)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model=SERVED_NAME, messages=MESSAGES, max_tokens=4)
    assert err.value.status_code == 500 and err.value.type == "server_error"
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model=SERVED_NAME, prompt="hi", max_tokens=4)
    with pytest.raises(openai.APIError, match="generation failed"):
        list(client.chat.completions.create(model=SERVED_NAME, messages=MESSAGES, max_tokens=4, stream=True))
    with pytest.raises(openai.APIError, match="generation failed"):
        list(client.completions.create(model=SERVED_NAME, prompt="hi", max_tokens=4, stream=True))
    assert nan_served.engine.stats()["running"] == 0
