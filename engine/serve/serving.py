"""Plumbing the chat and completions endpoints share: sampling params, length checks, starting requests,
merging their outputs, aborting on client disconnect, server-sent events and logprob token strings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from engine.infer import RequestOutput, SamplingParams
from engine.infer.structured import StructuredOutput
from engine.serve.core_client import CORE_GONE, EngineCoreClient, RequestStream
from engine.serve.protocol import APIError, SamplingFields

DISCONNECT_POLL_SECONDS = 0.5


def field_error(exc: ValueError) -> APIError:
    """The engine's ValueError("field: message") as a 400 whose `param` names the field."""
    text = str(exc)
    field_name, sep, _ = text.partition(":")
    param = field_name.strip() if sep and field_name.strip().isidentifier() else None
    return APIError(text, param=param)


def sampling_params(req: SamplingFields, max_tokens: int, logprobs: int | None = None,
                    prompt_logprobs: int | None = None,
                    structured_output: StructuredOutput | None = None) -> SamplingParams:
    params = SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=max(req.top_k, 0), min_p=req.min_p, repetition_penalty=req.repetition_penalty,
        frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty, seed=req.seed,
        max_tokens=max_tokens, stop=req.stop_list(), stop_token_ids=list(req.stop_token_ids or []),
        ignore_eos=req.ignore_eos, n=req.n, logprobs=logprobs, prompt_logprobs=prompt_logprobs,
        structured_output=structured_output,
    )
    try:
        params.validate()
    except ValueError as exc:
        raise field_error(exc) from exc
    return params


def resolve_max_tokens(requested: int | None, num_prompt_tokens: int, max_model_len: int,
                       prompt_param: str, max_tokens_param: str = "max_tokens", default: int | None = None) -> int:
    """Check prompt + output fit the context; None means `default`, or as many as fit when that is smaller."""
    room = max_model_len - num_prompt_tokens
    if room <= 0:
        raise APIError(
            f"This model's maximum context length is {max_model_len} tokens, but the prompt has "
            f"{num_prompt_tokens} tokens. Please shorten the prompt.",
            param=prompt_param, code="context_length_exceeded")
    if requested is None:
        return room if default is None else min(room, default)
    if requested > room:
        raise APIError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{num_prompt_tokens + requested} tokens ({num_prompt_tokens} in the prompt, {requested} for the "
            f"completion). Please reduce the prompt or {max_tokens_param}.",
            param=max_tokens_param, code="context_length_exceeded")
    return requested


async def start_requests(engine: EngineCoreClient, prompts: list[list[int]], params: SamplingParams,
                         request_id: str) -> list[RequestStream]:
    """Add one engine request per prompt; if one is refused, abort those already added."""
    streams: list[RequestStream] = []
    try:
        for i, prompt in enumerate(prompts):
            streams.append(await engine.add_request(prompt, params, request_id=f"{request_id}-{i}"))
    except ValueError as exc:
        abort_all(engine, streams)
        raise field_error(exc) from exc
    except BaseException:
        abort_all(engine, streams)
        raise
    return streams


def abort_all(engine: EngineCoreClient, streams: list[RequestStream]) -> None:
    for stream in streams:
        if not stream.done:
            engine.abort(stream.request_id)


async def merged(streams: list[RequestStream]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Outputs of several requests as they come, tagged with the index of the request they belong to."""
    if len(streams) == 1:
        async for out in streams[0]:
            yield 0, out
        return
    inbox: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: RequestStream) -> None:
        async for out in stream:
            inbox.put_nowait((i, out))
        inbox.put_nowait(None)

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await inbox.get()
            if item is None:
                remaining -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()


async def collect(engine: EngineCoreClient, streams: list[RequestStream],
                  raw_request: Request) -> list[tuple[int, RequestOutput]]:
    """All outputs of a non-streaming response; a client that hangs up meanwhile aborts its requests."""

    async def watch() -> None:
        while not await raw_request.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL_SECONDS)
        abort_all(engine, streams)

    watcher = asyncio.create_task(watch())
    try:
        return [item async for item in merged(streams)]
    finally:
        watcher.cancel()
        abort_all(engine, streams)


def sse(payload: BaseModel | dict[str, Any]) -> str:
    data = payload.model_dump_json(exclude_none=True) if isinstance(payload, BaseModel) else json.dumps(payload)
    return f"data: {data}\n\n"


def event_stream(engine: EngineCoreClient, streams: list[RequestStream],
                 events: Callable[[], AsyncIterator[str]]) -> StreamingResponse:
    """An SSE response whose requests are aborted if it stops early (client gone, error), then `[DONE]`."""

    async def body() -> AsyncIterator[str]:
        try:
            async for event in events():
                yield event
            yield "data: [DONE]\n\n"
        finally:
            # Starlette cancels this generator when the client disconnects; abort() is sync, so it runs.
            abort_all(engine, streams)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def unavailable(reason: str) -> APIError:
    """A 503 for every request while the engine core is gone (crashed, killed, or the server is stopping)."""
    return APIError(f"The model server cannot serve requests: {reason}.", status=503, type="server_error",
                    code="engine_unavailable")


def generation_failed(error: str | None) -> APIError:
    """A sample that ended with finish_reason "error" (e.g. NaN logits): a 500, or an error event mid-stream; a
    503 when the engine core died under it."""
    if error and error.startswith(CORE_GONE):  # not this request's fault: the server cannot serve at all now
        return unavailable(error)
    return APIError(f"generation failed: {error or 'unknown error'}", status=500, type="server_error",
                    code="generation_error")


def token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


def token_bytes(tokenizer, token_id: int) -> list[int]:
    return list(token_text(tokenizer, token_id).encode("utf-8"))
