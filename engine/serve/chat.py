"""POST /v1/chat/completions: messages through the chat template, tools and JSON mode, streamed or not.

Forcing without a grammar engine: `tool_choice: "required"` opens the assistant turn with `<tool_call>\\n`, a
named function with `<tool_call>\\n{"name": "...", "arguments": ` and JSON mode with `{`, so the model can only
continue a call or an object. Those prefilled characters count as output (the client sees them). JSON mode
is not constrained past that first `{`: the system prompt asks for one JSON object, and an answer that ended
normally but does not parse as JSON gets `finish_reason: "invalid_json"` so a client cannot mistake it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from engine.infer import RequestOutput
from engine.serve import serving
from engine.serve.async_engine import AsyncEngine
from engine.serve.chat_template import build_chat_prompt
from engine.serve.protocol import (
    APIError,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChoiceLogprobs,
    NamedToolChoice,
    PromptTokensDetails,
    TokenLogprobEntry,
    ToolCallDelta,
    TopLogprob,
    Usage,
    random_id,
)
from engine.serve.tool_calls import TOOL_CALL_START, StreamingToolCallParser, parse_tool_calls

JSON_INSTRUCTION = "Respond with one valid JSON object and nothing else."


@dataclass
class ChatPlan:
    """What a chat request turns into before it reaches the engine."""

    prompt_ids: list[int]
    """The templated prompt, tokenized."""
    prefill: str
    """Text put at the start of the assistant turn; it is part of the answer the client gets."""
    parse_tools: bool
    """Whether to look for tool calls in the output."""
    want_json: bool
    """Whether the answer must parse as JSON (response_format json_object / json_schema)."""


@dataclass
class ChoiceState:
    """One of the n samples, as its outputs arrive."""

    text: str = ""
    num_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    logprobs: list[TokenLogprobEntry] = field(default_factory=list)
    parser: StreamingToolCallParser = field(default_factory=StreamingToolCallParser)


def plan_chat(req: ChatCompletionRequest, tokenizer) -> ChatPlan:
    choice = req.tool_choice or "auto"
    tools = req.tools if choice != "none" else None
    prefill, system_extra = "", None
    if choice == "required" or isinstance(choice, NamedToolChoice):
        if not req.tools:
            raise APIError("tool_choice needs tools", param="tool_choice")
        prefill = f"{TOOL_CALL_START}\n"
        if isinstance(choice, NamedToolChoice):
            names = [t.function.name for t in req.tools]
            if choice.function.name not in names:
                raise APIError(f"tool_choice names {choice.function.name!r}, which is not in tools {names}",
                               param="tool_choice")
            prefill += f'{{"name": {json.dumps(choice.function.name)}, "arguments": '
    want_json = req.response_format is not None and req.response_format.type != "text"
    if want_json:
        system_extra = JSON_INSTRUCTION
        if req.response_format.json_schema:
            schema = req.response_format.json_schema.get("schema", req.response_format.json_schema)
            system_extra += f" It must follow this JSON schema:\n{json.dumps(schema, ensure_ascii=False)}"
        if not prefill:
            prefill = "{"
    text = build_chat_prompt(tokenizer, req.messages, tools, system_extra, prefill)
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ChatPlan(prompt_ids=ids, prefill=prefill, parse_tools=bool(tools), want_json=want_json)


def logprob_entries(tokenizer, out: RequestOutput) -> list[TokenLogprobEntry]:
    entries = []
    for lp in out.logprobs or []:
        top = [TopLogprob(token=serving.token_text(tokenizer, t), logprob=v,
                          bytes=serving.token_bytes(tokenizer, t)) for t, v in lp.top]
        entries.append(TokenLogprobEntry(token=serving.token_text(tokenizer, lp.token_id), logprob=lp.logprob,
                                         bytes=serving.token_bytes(tokenizer, lp.token_id), top_logprobs=top))
    return entries


def final_reason(state: ChoiceState, plan: ChatPlan, called_tools: bool, content: str | None) -> str:
    reason = state.finish_reason or "stop"
    if reason != "stop":
        return reason
    if called_tools:
        return "tool_calls"
    if plan.want_json:
        try:
            json.loads(content or "")
        except json.JSONDecodeError:
            return "invalid_json"
    return reason


class ChatHandler:
    def __init__(self, engine: AsyncEngine, model_name: str):
        self.engine = engine
        self.model_name = model_name

    async def create(self, req: ChatCompletionRequest, raw_request: Request):
        if req.top_logprobs is not None and not req.logprobs:
            raise APIError("top_logprobs needs logprobs set to true", param="top_logprobs")
        tokenizer = self.engine.tokenizer
        plan = plan_chat(req, tokenizer)
        requested = req.max_completion_tokens or req.max_tokens
        max_tokens = serving.resolve_max_tokens(
            requested, len(plan.prompt_ids), self.engine.max_model_len, "messages",
            "max_completion_tokens" if req.max_completion_tokens else "max_tokens")
        params = serving.sampling_params(req, max_tokens, logprobs=(req.top_logprobs or 0) if req.logprobs else None)
        request_id = random_id("chatcmpl")
        streams = await serving.start_requests(self.engine, [plan.prompt_ids], params, request_id)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return serving.event_stream(
                self.engine, streams, lambda: self._events(request_id, plan, streams, req.n, include_usage))
        outputs = await serving.collect(self.engine, streams, raw_request)
        return self._response(request_id, plan, outputs, req.n)

    def _response(self, request_id: str, plan: ChatPlan, outputs, n: int) -> ChatCompletionResponse:
        states = [ChoiceState(text=plan.prefill) for _ in range(n)]
        cached = 0
        for _, out in outputs:
            state = states[out.index]
            state.text += out.new_text
            state.num_tokens = out.num_output_tokens
            state.logprobs += logprob_entries(self.engine.tokenizer, out)
            cached = max(cached, out.num_cached_tokens)
            if out.finished:
                state.finish_reason, state.error = out.finish_reason, out.error
        choices = []
        for index, state in enumerate(states):
            if state.finish_reason == "error":
                raise serving.generation_failed(state.error)
            content, calls = parse_tool_calls(state.text) if plan.parse_tools else (state.text, [])
            message = AssistantMessage(content=content, tool_calls=calls or None)
            choices.append(ChatChoice(
                index=index, message=message, finish_reason=final_reason(state, plan, bool(calls), content),
                logprobs=ChoiceLogprobs(content=state.logprobs) if state.logprobs else None))
        return ChatCompletionResponse(id=request_id, model=self.model_name, choices=choices,
                                      usage=_usage(len(plan.prompt_ids), states, cached))

    async def _events(self, request_id: str, plan: ChatPlan, streams, n: int,
                      include_usage: bool) -> AsyncIterator[str]:
        def chunk(index: int, delta: ChatDelta, **extra) -> str:
            choice = ChatChunkChoice(index=index, delta=delta, **extra)
            return serving.sse(ChatCompletionChunk(id=request_id, model=self.model_name, choices=[choice]))

        states = [ChoiceState(text=plan.prefill) for _ in range(n)]
        num_calls = [0] * n
        cached = 0
        for index, state in enumerate(states):
            # The prefill is part of the answer: JSON mode's "{" shows now, a forced tool call's tag is held.
            opening = state.parser.feed(plan.prefill)[0] if plan.parse_tools else plan.prefill
            yield chunk(index, ChatDelta(role="assistant", content=opening))
        async for _, out in serving.merged(streams):
            state = states[out.index]
            if out.finish_reason == "error":
                yield serving.sse(serving.generation_failed(out.error).body())
                return
            new_text = out.new_text
            state.text += new_text
            state.num_tokens = out.num_output_tokens
            cached = max(cached, out.num_cached_tokens)
            content, calls = state.parser.feed(new_text) if plan.parse_tools else (new_text, [])
            if out.finished and plan.parse_tools:
                tail, last = state.parser.finish()
                content, calls = content + tail, calls + last
            logprobs = logprob_entries(self.engine.tokenizer, out)
            if content or calls or logprobs:
                deltas = [ToolCallDelta(index=num_calls[out.index] + i, id=c.id, type="function", function=c.function)
                          for i, c in enumerate(calls)]
                num_calls[out.index] += len(calls)
                yield chunk(out.index, ChatDelta(content=content or None, tool_calls=deltas or None),
                            logprobs=ChoiceLogprobs(content=logprobs) if logprobs else None)
            if out.finished:
                state.finish_reason = out.finish_reason
                reason = final_reason(state, plan, num_calls[out.index] > 0, state.text)
                yield chunk(out.index, ChatDelta(), finish_reason=reason)
        if include_usage:
            usage = _usage(len(plan.prompt_ids), states, cached)
            yield serving.sse(ChatCompletionChunk(id=request_id, model=self.model_name, choices=[], usage=usage))


def _usage(num_prompt_tokens: int, states: list[ChoiceState], cached: int) -> Usage:
    completion = sum(s.num_tokens for s in states)
    return Usage(prompt_tokens=num_prompt_tokens, completion_tokens=completion,
                 total_tokens=num_prompt_tokens + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))
