"""POST /v1/chat/completions: messages through the chat template, tools and JSON mode, streamed or not.

Structured output is decoded under a grammar (engine/serve/constraints.py picks it): `response_format`
json_object / json_schema, vLLM's guided_* extras, `tool_choice: "required"` or a named function (only calls,
in the template's `<tool_call>` format, arguments valid for the function's schema), and `tool_choice: "auto"`
(free text, but a call the model opens is completed valid). So an answer that stopped normally always parses.
JSON mode also tells the model, in the system prompt, to answer in JSON (with the schema), which helps it fill
the form with sensible content.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from engine.infer import RequestOutput
from engine.infer.structured import StructuredOutput
from engine.serve import constraints, serving
from engine.serve.chat_template import build_chat_prompt
from engine.serve.core_client import EngineCoreClient
from engine.serve.limits import ServeLimits
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
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
    random_id,
)
from engine.serve.tool_calls import StreamingToolCallParser

JSON_INSTRUCTION = "Respond with one valid JSON object and nothing else."


@dataclass
class ChatPlan:
    """What a chat request turns into before it reaches the engine."""

    prompt_ids: list[int]
    """The templated prompt, tokenized."""
    parse_tools: bool
    """Whether to look for tool calls in the output."""
    constraint: tuple[StructuredOutput, str] | None = None
    """The grammar the output is decoded under and the request field it comes from; None: free text."""


@dataclass
class ChoiceState:
    """One of the n samples, as its outputs arrive: what the client has been shown and the raw text."""

    text: str = ""
    """The raw output."""
    content: str = ""
    """Content shown so far: the text less the tool-call blocks the parser took out."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    num_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    logprobs: list[TokenLogprobEntry] = field(default_factory=list)
    parser: StreamingToolCallParser = field(default_factory=StreamingToolCallParser)


@dataclass
class ChoiceDelta:
    """What one engine output adds to a choice; a stream sends it as a chunk."""

    index: int
    content: str
    tool_calls: list[ToolCall]
    logprobs: list[TokenLogprobEntry]
    finish_reason: str | None = None
    """The client-facing reason once the choice is done ("tool_calls", "stop", "length", "error"...)."""
    error: str | None = None


def plan_chat(req: ChatCompletionRequest, tokenizer) -> ChatPlan:
    choice = req.tool_choice or "auto"
    tools = req.tools if choice != "none" else None
    if choice == "required" or isinstance(choice, NamedToolChoice):
        if not req.tools:
            raise APIError("tool_choice needs tools", param="tool_choice")
        if isinstance(choice, NamedToolChoice):
            names = [t.function.name for t in req.tools]
            if choice.function.name not in names:
                raise APIError(f"tool_choice names {choice.function.name!r}, which is not in tools {names}",
                               param="tool_choice")
    system_extra = None
    if req.response_format is not None and req.response_format.type != "text":
        system_extra = JSON_INSTRUCTION
        if req.response_format.json_schema:
            schema = req.response_format.json_schema.get("schema", req.response_format.json_schema)
            system_extra += f" It must follow this JSON schema:\n{json.dumps(schema, ensure_ascii=False)}"
    text = build_chat_prompt(tokenizer, req.messages, tools, system_extra)
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ChatPlan(prompt_ids=ids, parse_tools=bool(tools), constraint=constraints.chat_constraint(req))


def logprob_entries(tokenizer, out: RequestOutput) -> list[TokenLogprobEntry]:
    entries = []
    for lp in out.logprobs or []:
        top = [TopLogprob(token=serving.token_text(tokenizer, t), logprob=v,
                          bytes=serving.token_bytes(tokenizer, t)) for t, v in lp.top]
        entries.append(TokenLogprobEntry(token=serving.token_text(tokenizer, lp.token_id), logprob=lp.logprob,
                                         bytes=serving.token_bytes(tokenizer, lp.token_id), top_logprobs=top))
    return entries


def final_reason(state: ChoiceState, called_tools: bool) -> str:
    reason = state.finish_reason or "stop"
    return "tool_calls" if reason == "stop" and called_tools else reason


class ChatRun:
    """Turns engine outputs into per-choice deltas while keeping each choice's whole answer.

    The one path both response kinds take: a stream sends each delta as it comes, a plain response is built
    from the same states once every output is in, so the two cannot disagree on content, calls or reasons.
    """

    def __init__(self, tokenizer, plan: ChatPlan, n: int):
        self.tokenizer, self.plan = tokenizer, plan
        self.states = [ChoiceState() for _ in range(n)]
        self.cached_tokens = 0

    def apply(self, out: RequestOutput) -> ChoiceDelta:
        state = self.states[out.index]
        self.cached_tokens = max(self.cached_tokens, out.num_cached_tokens)
        if out.finish_reason == "error":
            state.finish_reason, state.error = "error", out.error
            return ChoiceDelta(out.index, "", [], [], finish_reason="error", error=out.error)
        state.text += out.new_text
        state.num_tokens = out.num_output_tokens
        content, calls = state.parser.feed(out.new_text) if self.plan.parse_tools else (out.new_text, [])
        if out.finished and self.plan.parse_tools:
            tail, last = state.parser.finish()
            content, calls = content + tail, calls + last
        logprobs = logprob_entries(self.tokenizer, out)
        state.content += content
        state.tool_calls += calls
        state.logprobs += logprobs
        delta = ChoiceDelta(out.index, content, calls, logprobs)
        if out.finished:
            state.finish_reason = out.finish_reason
            delta.finish_reason = final_reason(state, bool(state.tool_calls))
        return delta

    def failure(self) -> str | None:
        """The error of the first choice that failed, if one did."""
        return next((s.error or "unknown error" for s in self.states if s.finish_reason == "error"), None)

    def choices(self) -> list[ChatChoice]:
        choices = []
        for index, state in enumerate(self.states):
            content: str | None = state.content
            if state.tool_calls:  # around calls, only real words count as content
                content = content.strip() or None
            choices.append(ChatChoice(
                index=index, message=AssistantMessage(content=content, tool_calls=state.tool_calls or None),
                finish_reason=final_reason(state, bool(state.tool_calls)),
                logprobs=ChoiceLogprobs(content=state.logprobs) if state.logprobs else None))
        return choices

    def usage(self) -> Usage:
        prompt = len(self.plan.prompt_ids)
        completion = sum(s.num_tokens for s in self.states)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens))


class ChatHandler:
    def __init__(self, engine: EngineCoreClient, model_name: str, limits: ServeLimits):
        self.engine = engine
        self.model_name = model_name
        self.limits = limits

    async def create(self, req: ChatCompletionRequest, raw_request: Request):
        if req.top_logprobs is not None and not req.logprobs:
            raise APIError("top_logprobs needs logprobs set to true", param="top_logprobs")
        tokenizer = self.engine.tokenizer
        plan = plan_chat(req, tokenizer)
        requested = req.max_completion_tokens or req.max_tokens
        max_tokens = serving.resolve_max_tokens(
            requested, len(plan.prompt_ids), self.engine.max_model_len, "messages",
            "max_completion_tokens" if req.max_completion_tokens else "max_tokens",
            default=self.limits.default_max_tokens)
        structured = await constraints.compile_constraint(self.engine, plan.constraint)
        params = serving.sampling_params(req, max_tokens, logprobs=(req.top_logprobs or 0) if req.logprobs else None,
                                         structured_output=structured)
        request_id = random_id("chatcmpl")
        streams = await serving.start_requests(self.engine, [plan.prompt_ids], params, request_id)
        run = ChatRun(tokenizer, plan, req.n)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return serving.event_stream(self.engine, streams,
                                        lambda: self._events(request_id, run, streams, include_usage))
        for _, out in await serving.collect(self.engine, streams, raw_request):
            run.apply(out)
        if (error := run.failure()) is not None:
            raise serving.generation_failed(error)
        return ChatCompletionResponse(id=request_id, model=self.model_name, choices=run.choices(),
                                      usage=run.usage())

    async def _events(self, request_id: str, run: ChatRun, streams, include_usage: bool) -> AsyncIterator[str]:
        def chunk(index: int, delta: ChatDelta, **extra) -> str:
            choice = ChatChunkChoice(index=index, delta=delta, **extra)
            return serving.sse(ChatCompletionChunk(id=request_id, model=self.model_name, choices=[choice]))

        num_calls = [0] * len(run.states)
        for index, state in enumerate(run.states):
            yield chunk(index, ChatDelta(role="assistant", content=state.content))
        async for _, out in serving.merged(streams):
            delta = run.apply(out)
            if delta.finish_reason == "error":
                yield serving.sse(serving.generation_failed(delta.error).body())
                return
            if delta.content or delta.tool_calls or delta.logprobs:
                calls = [ToolCallDelta(index=num_calls[delta.index] + i, id=c.id, type="function",
                                       function=c.function) for i, c in enumerate(delta.tool_calls)]
                num_calls[delta.index] += len(calls)
                yield chunk(delta.index, ChatDelta(content=delta.content or None, tool_calls=calls or None),
                            logprobs=ChoiceLogprobs(content=delta.logprobs) if delta.logprobs else None)
            if delta.finish_reason:
                yield chunk(delta.index, ChatDelta(), finish_reason=delta.finish_reason)
        if include_usage:
            yield serving.sse(ChatCompletionChunk(id=request_id, model=self.model_name, choices=[],
                                                  usage=run.usage()))
