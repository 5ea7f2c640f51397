"""The Chat page's side of the model server protocol: what one pane sends, how its answer streams back.

Kept apart from the widgets so the request shape is plain code: the whole history of a pane goes out on every
turn (system prompt first), in the same order, so the server's prefix cache finds the earlier turns. Sampling
settings that OpenAI's API lacks (top_k, min_p, repetition_penalty) travel in extra_body. The stream is an
async iterator over HTTP: cancelling the task that reads it closes the connection, and the server then aborts
the request, so Stop frees the engine at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import openai

DEFAULT_PARAMS: dict = {
    "temperature": 0.7, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "max_tokens": 512, "repetition_penalty": 1.0,
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "seed": None, "stop": [],
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
    return out


def request_messages(system_prompt: str, turns: list[tuple[str, str]]) -> list[dict]:
    """System prompt (when set), then every (role, content) turn of the pane, oldest first."""
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
    """One streamed answer as it grows; the numbers come with the final usage chunk."""

    text: str = ""
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    tokens_per_s: float = 0.0
    finish_reason: str = ""

    def stats(self) -> dict:
        """The fields add_message stores next to the text."""
        return {"completion_tokens": self.completion_tokens, "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "tokens_per_s": self.tokens_per_s,
                "finish_reason": self.finish_reason}


async def stream_answer(url: str, model: str, messages: list[dict], params: dict, answer: Answer,
                        on_delta: Callable[[], None]) -> None:
    """Stream into `answer`, calling on_delta after each piece of text; raises openai errors as they come
    (HTTP errors before the stream, and an error event inside it)."""
    start = time.monotonic()
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="inkstone", max_retries=0,
                                  timeout=TIMEOUT) as client:
        stream = await client.chat.completions.create(model=model, messages=messages, stream=True,
                                                      stream_options={"include_usage": True},
                                                      **request_kwargs(params))
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        answer.text += choice.delta.content
                        on_delta()
                    if choice.finish_reason:
                        answer.finish_reason = choice.finish_reason
                if chunk.usage:
                    answer.completion_tokens = chunk.usage.completion_tokens
                    answer.prompt_tokens = chunk.usage.prompt_tokens
                    details = chunk.usage.prompt_tokens_details
                    answer.cached_tokens = (details.cached_tokens or 0) if details else 0
    elapsed = time.monotonic() - start
    # Tokens over the whole request (prefill included): what the user waited for.
    answer.tokens_per_s = answer.completion_tokens / elapsed if elapsed > 0 else 0.0


async def server_ready(url: str) -> bool:
    """Whether the server at url answers /health (it binds its port only once the model is loaded)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"{url}/health")).status_code == 200
    except httpx.HTTPError:
        return False
