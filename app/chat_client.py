"""Talking to an OpenAI-compatible model server over HTTP: the one client that Chat, evaluation and agents share.

Our model servers (a `serve` job, `inkstone serve`) speak OpenAI's API on loopback, so every face that asks a
model something goes through here rather than importing the engine: the web process stays free of torch,
and a model on another machine works the same. The official `openai` client (itself on httpx) does the HTTP
and the server-sent events; this module adds what we need on top: our sampling settings (top_k, min_p and
repetition_penalty travel in extra_body, since OpenAI's API lacks them), one `Answer` shape for streamed and
whole replies, and a readiness probe.

A stream is an async iterator over one HTTP response: cancelling the task that reads it closes the
connection, and our server then aborts the request, so a Stop frees the engine at once. Errors are the
`openai` exceptions as they come (HTTP errors before the stream, an error event inside it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import jsonschema
import openai

DEFAULT_PARAMS: dict = {
    "temperature": 0.7, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "max_tokens": 512, "repetition_penalty": 1.0,
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "seed": None, "stop": [], "response_format": None,
}
EXTRA_BODY = ("top_k", "min_p", "repetition_penalty")
INT_PARAMS = ("top_k", "max_tokens", "seed")
# A CPU server can take minutes to prefill a long prompt, so reads wait long; a dead port fails fast.
TIMEOUT = openai.Timeout(600.0, connect=5.0)


def clean_params(params: dict) -> dict:
    """Defaults filled in, integers as integers (number inputs give floats), nothing unknown."""
    out = {key: params.get(key, default) for key, default in DEFAULT_PARAMS.items()}
    for key in INT_PARAMS:
        if out[key] is not None:
            out[key] = int(out[key])
    out["stop"] = [s for s in (out["stop"] or []) if s]
    out["response_format"] = response_format_or_none(out["response_format"])
    return out


def response_format_or_none(value) -> dict | None:
    """OpenAI's `response_format` as the Chat page keeps it: json_object, json_schema with a schema, or None."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return {"type": "json_object"}
    spec = value.get("json_schema")
    if value.get("type") == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return {"type": "json_schema", "json_schema": {"name": str(spec.get("name") or "answer"),
                                                        "schema": spec["schema"], "strict": True}}
    return None


def schema_response_format(text: str) -> dict:
    """A JSON Schema typed by the user -> response_format; ValueError says what is wrong and where."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(schema, dict):
        raise ValueError("a JSON Schema is an object ({...})")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "the top level"
        raise ValueError(f"not a valid JSON Schema at {where}: {e.message}") from None
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def request_messages(system_prompt: str, turns: list[tuple[str, str]]) -> list[dict]:
    """System prompt (when set), then every (role, content) turn, oldest first.

    The whole history goes out on every turn in the same order, so the server's prefix cache finds the
    earlier turns."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return system + [{"role": role, "content": content} for role, content in turns]


def request_kwargs(params: dict) -> dict:
    """Arguments of chat.completions.create; unset seed and empty stop are left out (server defaults)."""
    p = clean_params(params)
    kwargs = {k: v for k, v in p.items() if k not in EXTRA_BODY and v not in (None, [])}
    kwargs["extra_body"] = {k: p[k] for k in EXTRA_BODY}
    return kwargs


@dataclass
class Answer:
    """One answer, filled as it streams in (or at once); the numbers come with the usage."""

    text: str = ""
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    tokens_per_s: float = 0.0
    finish_reason: str = ""

    def stats(self) -> dict:
        """Everything but the text, as keyword arguments (what the chat store keeps beside a message)."""
        return {"completion_tokens": self.completion_tokens, "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "tokens_per_s": self.tokens_per_s,
                "finish_reason": self.finish_reason}

    def add_usage(self, usage) -> None:
        self.completion_tokens = usage.completion_tokens
        self.prompt_tokens = usage.prompt_tokens
        details = usage.prompt_tokens_details
        self.cached_tokens = (details.cached_tokens or 0) if details else 0


class ModelClient:
    """One model server, by its base URL (`http://127.0.0.1:PORT`, without `/v1`)."""

    def __init__(self, url: str, api_key: str = "inkstone", timeout: openai.Timeout | float = TIMEOUT):
        self.url, self.api_key, self.timeout = url.rstrip("/"), api_key, timeout

    def _openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.api_key, max_retries=0,
                                  timeout=self.timeout)

    async def ready(self) -> bool:
        """Whether the server answers /health (ours binds its port only once the model is loaded)."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(f"{self.url}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def stream_chat(self, model: str, messages: list[dict], params: dict, *, answer: Answer | None = None,
                          on_delta: Callable[[], None] | None = None, **extra) -> Answer:
        """Stream a chat answer into `answer` (kept by the caller, so a cancelled stream leaves what came),
        calling on_delta after each piece of text. `extra` goes to the request as is (tools, response_format…)."""
        answer = Answer() if answer is None else answer
        start = time.monotonic()
        async with self._openai() as client:
            stream = await client.chat.completions.create(model=model, messages=messages, stream=True,
                                                          stream_options={"include_usage": True},
                                                          **request_kwargs(params), **extra)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            answer.text += choice.delta.content
                            if on_delta is not None:
                                on_delta()
                        if choice.finish_reason:
                            answer.finish_reason = choice.finish_reason
                    if chunk.usage:
                        answer.add_usage(chunk.usage)
        _set_speed(answer, start)
        return answer

    async def chat(self, model: str, messages: list[dict], params: dict, **extra) -> Answer:
        """The whole answer in one response (for callers that do not show tokens as they come)."""
        start = time.monotonic()
        async with self._openai() as client:
            response = await client.chat.completions.create(model=model, messages=messages, **request_kwargs(params),
                                                            **extra)
        choice = response.choices[0]
        answer = Answer(text=choice.message.content or "", finish_reason=choice.finish_reason or "")
        if response.usage:
            answer.add_usage(response.usage)
        _set_speed(answer, start)
        return answer


def _set_speed(answer: Answer, start: float) -> None:
    # Tokens over the whole request (prefill included): what the user waited for.
    elapsed = time.monotonic() - start
    answer.tokens_per_s = answer.completion_tokens / elapsed if elapsed > 0 else 0.0
