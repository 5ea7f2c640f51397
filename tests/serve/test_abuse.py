"""The fault-and-abuse probe kept as tests: bodies no client should send get a 400/413 in OpenAI's error shape.

Lone UTF-16 surrogates (valid JSON escapes, invalid Unicode), bodies that are not UTF-8 or not JSON, nesting
that exhausts the parser, integers that overflow the engine, bodies and prompt lists past the server's limits,
and a chat request without max_tokens, which gets the server's default cap instead of the whole context.
Surrogates are sent as raw bytes: clients (httpx, openai) refuse to encode them, attackers do not.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from engine.serve.limits import ServeLimits
from tests.serve.conftest import SERVED_NAME, Served, ServerThread, start_core

MESSAGES = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def send(served, path: str, body: bytes, **headers) -> httpx.Response:
    return httpx.post(
        served.base_url + path, content=body, timeout=60, headers={"content-type": "application/json", **headers}
    )


def send_json(served, path: str, body: dict) -> httpx.Response:
    # json.dumps escapes non-ASCII, so a lone surrogate travels as the 6 bytes `\ud800`.
    return send(served, path, json.dumps(body).encode())


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def chat_body(**fields) -> dict:
    return {"model": SERVED_NAME, "messages": MESSAGES, "max_tokens": 2, **fields}


@pytest.mark.parametrize(
    ("path", "body", "param", "where"),
    [
        (
            "/v1/chat/completions",
            chat_body(messages=[{"role": "user", "content": "a\ud800b"}]),
            "messages",
            "messages.0.content",
        ),
        (
            "/v1/chat/completions",
            chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]),
            "messages",
            "messages.0.content.0.text",
        ),
        ("/v1/completions", {"model": SERVED_NAME, "prompt": "x\ud800", "max_tokens": 2}, "prompt", "prompt"),
        ("/v1/completions", {"model": SERVED_NAME, "prompt": ["ok", "\ud800"], "max_tokens": 2}, "prompt", "prompt.1"),
        (
            "/v1/chat/completions",
            chat_body(tools=[{"type": "function", "function": {"name": "f\ud800"}}]),
            "tools",
            "tools.0.function.name",
        ),
        ("/v1/chat/completions", chat_body(model="\ud800"), "model", "model"),
        ("/v1/completions", {"model": "gpt\udc00", "prompt": "hi"}, "model", "model"),
        ("/v1/chat/completions", chat_body(stop=["\ud800"]), "stop", "stop.0"),
    ],
)
def test_lone_surrogates_are_400_naming_where(served, path, body, param, where):
    error = error_of(send_json(served, path, body), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"].startswith(where + " holds a lone UTF-16 surrogate"), error["message"]


def test_a_surrogate_in_a_key_is_400(served):
    body = chat_body(messages=[{"role": "user", "content": "hi", "\ud800": 1}])
    error = error_of(send_json(served, "/v1/chat/completions", body), 400)
    assert error["param"] == "messages" and error["message"].startswith("a key of messages.0")


def test_surrogate_pairs_are_fine(served):
    # `\ud83d\ude00` is a valid escape of one emoji: it must not be taken for two lone surrogates.
    response = send_json(
        served, "/v1/chat/completions", chat_body(messages=[{"role": "user", "content": "\U0001f600"}])
    )
    assert response.status_code == 200, response.text


def test_non_utf8_body_is_400_saying_where(served):
    error = error_of(send(served, "/v1/chat/completions", b'{"model": "caf\xe9"}'), 400)
    assert error["code"] == "invalid_encoding" and error["param"] is None
    assert "0xe9 at offset 14" in error["message"]


@pytest.mark.parametrize("depth", [65, 200_000])
def test_deep_nesting_is_400(served, depth):
    # 65 levels trips our walk; 200,000 trips the JSON parser's own recursion guard first.
    body = b'{"model": "m", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    error = error_of(send(served, "/v1/chat/completions", body), 400)
    assert "more than 64 levels deep" in error["message"]
    # The walk knows the field; the parser's guard only knows the body as a whole.
    assert error["param"] == ("messages" if depth == 65 else None)


def test_reasonable_nesting_is_accepted(served):
    schema: dict = {"type": "string"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"inner": schema}}
    tool = {"type": "function", "function": {"name": "deep", "parameters": schema}}
    assert send_json(served, "/v1/chat/completions", chat_body(tools=[tool])).status_code == 200


def test_invalid_json_names_no_param_and_says_where(served):
    error = error_of(send(served, "/v1/chat/completions", b'{"model": "m",\n  "messages": [}'), 400)
    assert error["param"] is None and error["code"] == "invalid_json"
    assert "line 2 column 16" in error["message"]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(served, constant):
    body = b'{"model": "tiny-llama", "prompt": "hi", "temperature": ' + constant + b"}"
    error = error_of(send(served, "/v1/completions", body), 400)
    assert error["code"] == "invalid_json" and constant.lstrip(b"-").decode() in error["message"]


@pytest.mark.parametrize("body", [b"", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_an_object_is_400(served, body):
    error_of(send(served, "/v1/completions", body), 400)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 2**70),
        ("seed", -(2**64)),
        ("top_k", 2**40),
        ("stop_token_ids", [2**70]),
    ],
)
def test_integers_past_their_range_are_400(served, field, value):
    error = error_of(send_json(served, "/v1/chat/completions", chat_body(**{field: value})), 400)
    assert error["param"] == field and "overflow" not in error["message"].lower()


def test_huge_token_id_prompt_is_400(served):
    error = error_of(send_json(served, "/v1/completions", {"model": SERVED_NAME, "prompt": [2**70]}), 400)
    assert error["param"] == "prompt"


def test_huge_seed_through_the_client_and_the_extremes_that_work(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=SERVED_NAME, messages=MESSAGES, max_tokens=2, seed=2**70)
    assert err.value.param == "seed"
    for seed in (-(2**63), 2**63 - 1):
        reply = client.chat.completions.create(model=SERVED_NAME, messages=MESSAGES, max_tokens=2, seed=seed, n=2)
        assert len(reply.choices) == 2


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nowhere", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models", 405),
    ],
)
def test_routing_errors_have_openai_shape(served, method, path, status):
    error = error_of(httpx.request(method, served.base_url + path, timeout=30), status)
    assert error["type"] == "invalid_request_error"


# ---- limits, on a server with small ones ----------------------------------------------------------------

LIMITS = ServeLimits(max_request_bytes=64 * 1024, max_prompts=4, default_max_tokens=5)


@pytest.fixture(scope="module")
def limited(tiny_model_dir):
    from engine.serve.app import create_app

    app = create_app(start_core(tiny_model_dir("llama")), SERVED_NAME, limits=LIMITS)
    thread = ServerThread(app)
    yield Served(base_url=f"http://127.0.0.1:{thread.port}", app=app, model_dir=str(tiny_model_dir("llama")))
    thread.stop()


@pytest.fixture
def limited_client(limited):
    return openai.OpenAI(base_url=limited.base_url + "/v1", api_key="x", max_retries=0, timeout=60)


def test_body_over_the_limit_is_413_before_tokenizing(limited):
    tokens_before = limited.engine.stats()["prompt_tokens"]
    big = json.dumps({"model": SERVED_NAME, "prompt": "word " * 200_000}).encode()  # 1 MB
    error = error_of(send(limited, "/v1/completions", big), 413)
    assert error["code"] == "request_too_large" and str(LIMITS.max_request_bytes) in error["message"]

    def chunked():  # no Content-Length: the limit is counted as the body streams in
        yield big[:1000]
        yield big[1000:]

    response = httpx.post(
        limited.base_url + "/v1/completions",
        content=chunked(),
        timeout=60,
        headers={"content-type": "application/json"},
    )
    assert error_of(response, 413)["code"] == "request_too_large"
    assert limited.engine.stats()["prompt_tokens"] == tokens_before


def test_body_over_the_limit_through_the_client(limited_client):
    with pytest.raises(openai.APIStatusError) as err:
        limited_client.chat.completions.create(model=SERVED_NAME, messages=[{"role": "user", "content": "x" * 70_000}])
    assert err.value.status_code == 413


def test_body_just_under_the_limit_is_served(limited):
    body = {"model": SERVED_NAME, "prompt": "", "max_tokens": 1}
    body["prompt"] = "a " * ((LIMITS.max_request_bytes - len(json.dumps(body)) - 10) // 2)
    response = send_json(limited, "/v1/completions", body)
    # The prompt is far past the tiny model's 512-token context: refused, but by the context check (so read).
    assert error_of(response, 400)["code"] == "context_length_exceeded"


def test_too_many_prompts_is_400_before_tokenizing(limited, limited_client):
    tokens_before = limited.engine.stats()["prompt_tokens"]
    with pytest.raises(openai.BadRequestError) as err:
        limited_client.completions.create(model=SERVED_NAME, prompt=["hi"] * 5, max_tokens=1)
    assert err.value.param == "prompt" and err.value.code == "too_many_prompts" and "at most 4" in err.value.message
    assert limited.engine.stats()["prompt_tokens"] == tokens_before
    reply = limited_client.completions.create(model=SERVED_NAME, prompt=["hi"] * 4, max_tokens=1)
    assert len(reply.choices) == 4
    with pytest.raises(openai.BadRequestError):  # token-id prompts count the same way
        limited_client.completions.create(model=SERVED_NAME, prompt=[[1, 2]] * 5, max_tokens=1)


def test_chat_without_max_tokens_gets_the_default_cap(limited_client):
    for stream in (False, True):
        reply = limited_client.chat.completions.create(
            model=SERVED_NAME,
            messages=MESSAGES,
            extra_body={"ignore_eos": True},
            stream=stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        )
        if stream:
            chunks = list(reply)
            usage, reason = chunks[-1].usage, [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            usage, reason = reply.usage, reply.choices[0].finish_reason
        assert usage.completion_tokens == LIMITS.default_max_tokens and reason == "length"
    # An explicit max_tokens is the client's choice, bounded by the context only.
    reply = limited_client.chat.completions.create(
        model=SERVED_NAME, messages=MESSAGES, max_tokens=9, extra_body={"ignore_eos": True}
    )
    assert reply.usage.completion_tokens == 9


def test_default_cap_never_exceeds_the_room_left(limited, limited_client):
    # A prompt that leaves 3 tokens of context: the cap of 5 shrinks to them instead of failing the request.
    from engine.serve.chat import plan_chat
    from engine.serve.protocol import ChatCompletionRequest

    def prompt_tokens(words: int) -> int:
        req = ChatCompletionRequest(model=SERVED_NAME, messages=[{"role": "user", "content": "word " * words}])
        return len(plan_chat(req, limited.tokenizer).prompt_ids)

    words = next(k for k in range(400, 520) if prompt_tokens(k) == 512 - 3)
    reply = limited_client.chat.completions.create(
        model=SERVED_NAME, messages=[{"role": "user", "content": "word " * words}], extra_body={"ignore_eos": True}
    )
    assert reply.usage.prompt_tokens == 509 and reply.usage.completion_tokens == 3
    assert reply.choices[0].finish_reason == "length"


def test_limits_are_checked_when_the_app_is_built():
    from engine.serve.app import create_app

    with pytest.raises(ValueError, match="max_prompts"):
        create_app(object(), SERVED_NAME, limits=ServeLimits(max_prompts=0))


def test_serve_args_carry_every_limit_with_its_default():
    from dataclasses import fields

    from engine.argdocs import field_docs
    from engine.serve.server import ServeArgs

    args = ServeArgs(model_path="m")
    assert args.limits() == ServeLimits()
    docs = field_docs(ServeArgs)
    for f in fields(ServeLimits):
        assert docs[f.name] == field_docs(ServeLimits)[f.name]
