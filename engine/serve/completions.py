"""POST /v1/completions: raw prompts (text or token ids, one or many), streamed or not, with echo + logprobs.

Evaluation harnesses score choices with `echo: true, logprobs: k, max_tokens: 0`: the answer is the prompt's
own teacher-forced log-probabilities. The engine always generates at least one token, so max_tokens 0 asks
it for one and drops it. Choice i of prompt p has index p * n + i, as OpenAI numbers them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from engine.infer import RequestOutput, TokenLogprob
from engine.serve import constraints, serving
from engine.serve.core_client import EngineCoreClient
from engine.serve.limits import ServeLimits
from engine.serve.protocol import (
    APIError,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    PromptTokensDetails,
    Usage,
    random_id,
)

LOGPROB_FIELDS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


@dataclass
class Prompt:
    ids: list[int]
    """The prompt's tokens."""
    text: str | None
    """The prompt as the client sent it, None when it sent token ids."""


@dataclass
class ChoiceState:
    """One choice being assembled: its text and logprobs so far."""

    text: str = ""
    logprobs: CompletionLogprobs = field(default_factory=CompletionLogprobs)
    num_tokens: int = 0
    finish_reason: str | None = None
    started: bool = False


def normalize_prompts(req: CompletionRequest, tokenizer, max_prompts: int) -> list[Prompt]:
    raw = req.prompt
    if isinstance(raw, str) or (raw and isinstance(raw[0], int)):
        raw = [raw]
    if not raw:
        raise APIError("prompt is empty", param="prompt")
    if len(raw) > max_prompts:  # before tokenizing any of them
        raise APIError(f"prompt: {len(raw)} prompts in one request; this server takes at most {max_prompts}. "
                       "Send them in several requests.", param="prompt", code="too_many_prompts")
    prompts = []
    for item in raw:
        if isinstance(item, str):
            prompts.append(Prompt(ids=tokenizer.encode(item, add_special_tokens=True), text=item))
        else:  # the engine checks the ids; the text is decoded only if echo needs it
            prompts.append(Prompt(ids=list(item), text=None))
        if not prompts[-1].ids:
            raise APIError("prompt is empty", param="prompt")
    return prompts


class CompletionsHandler:
    def __init__(self, engine: EngineCoreClient, model_name: str, limits: ServeLimits):
        self.engine = engine
        self.model_name = model_name
        self.limits = limits

    async def create(self, req: CompletionRequest, raw_request: Request):
        if req.suffix:
            raise APIError("suffix is not supported", param="suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise APIError("best_of other than n is not supported", param="best_of")
        prompts = normalize_prompts(req, self.engine.tokenizer, self.limits.max_prompts)
        engine_max_tokens = max(req.max_tokens, 1)
        for prompt in prompts:
            serving.resolve_max_tokens(engine_max_tokens, len(prompt.ids), self.engine.max_model_len, "prompt")
        prompt_logprobs = req.logprobs if req.echo and req.logprobs is not None else None
        structured = await constraints.compile_constraint(self.engine, constraints.extras_constraint(req))
        params = serving.sampling_params(req, engine_max_tokens, logprobs=req.logprobs,
                                         prompt_logprobs=prompt_logprobs, structured_output=structured)
        request_id = random_id("cmpl")
        streams = await serving.start_requests(self.engine, [p.ids for p in prompts], params, request_id)
        run = CompletionRun(self.engine.tokenizer, req, prompts)
        if req.stream:
            return serving.event_stream(self.engine, streams, lambda: self._events(request_id, run, streams))
        for prompt_index, out in await serving.collect(self.engine, streams, raw_request):
            for delta in run.apply(prompt_index, out):
                if delta.finish_reason == "error":
                    raise serving.generation_failed(out.error)
        choices = [CompletionChoice(index=i, text=s.text, finish_reason=s.finish_reason,
                                    logprobs=s.logprobs if req.logprobs is not None else None)
                   for i, s in enumerate(run.states)]
        return CompletionResponse(id=request_id, model=self.model_name, choices=choices, usage=run.usage())

    async def _events(self, request_id: str, run: CompletionRun, streams) -> AsyncIterator[str]:
        async for prompt_index, out in serving.merged(streams):
            for delta in run.apply(prompt_index, out):
                if delta.finish_reason == "error":
                    yield serving.sse(serving.generation_failed(out.error).body())
                    return
                if delta.text or delta.finish_reason or (delta.logprobs and delta.logprobs.tokens):
                    yield serving.sse(CompletionResponse(id=request_id, model=self.model_name, choices=[delta]))
        if run.req.stream_options and run.req.stream_options.include_usage:
            yield serving.sse(CompletionResponse(id=request_id, model=self.model_name, choices=[],
                                                 usage=run.usage()))


class CompletionRun:
    """Turns engine outputs into completion choices (as deltas), keeping each choice's full state."""

    def __init__(self, tokenizer, req: CompletionRequest, prompts: list[Prompt]):
        self.tokenizer, self.req, self.prompts = tokenizer, req, prompts
        self.states = [ChoiceState() for _ in range(len(prompts) * req.n)]
        self.needs_prompt_logprobs = req.echo and req.logprobs is not None
        # Prompt logprobs arrive with sample 0's first output; other samples' outputs wait for them here.
        self.prompt_logprobs: dict[int, list[TokenLogprob | None]] = {}
        self.held: dict[int, list[RequestOutput]] = defaultdict(list)
        self.cached_tokens = 0

    def apply(self, prompt_index: int, out: RequestOutput) -> list[CompletionChoice]:
        if out.prompt_logprobs is not None:
            self.prompt_logprobs[prompt_index] = out.prompt_logprobs
        if (self.needs_prompt_logprobs and prompt_index not in self.prompt_logprobs
                and out.finish_reason not in ("error", "abort")):
            self.held[prompt_index].append(out)
            return []
        ready = self.held.pop(prompt_index, []) + [out]
        return [self._apply_one(prompt_index, o) for o in ready]

    def _apply_one(self, prompt_index: int, out: RequestOutput) -> CompletionChoice:
        index = prompt_index * self.req.n + out.index
        state = self.states[index]
        want_logprobs = self.req.logprobs is not None
        delta = CompletionChoice(index=index, text="", finish_reason=None,
                                 logprobs=CompletionLogprobs() if want_logprobs else None)
        self.cached_tokens = max(self.cached_tokens, out.num_cached_tokens)
        if not state.started:
            state.started = True
            if self.req.echo:
                prompt = self.prompts[prompt_index]
                delta.text += prompt.text if prompt.text is not None else self.tokenizer.decode(prompt.ids)
                if want_logprobs:
                    entries = self.prompt_logprobs.get(prompt_index) or [None] * len(prompt.ids)
                    self._add_logprobs(state, delta.logprobs, prompt.ids, entries)
        if self.req.max_tokens > 0:
            delta.text += out.new_text
            state.num_tokens = out.num_output_tokens
            if want_logprobs and out.logprobs:
                self._add_logprobs(state, delta.logprobs, [lp.token_id for lp in out.logprobs], out.logprobs)
        state.text += delta.text
        if out.finished:
            # max_tokens 0: the one token the engine made was dropped, so the choice stopped on length.
            delta.finish_reason = out.finish_reason if self.req.max_tokens > 0 else "length"
            if out.finish_reason in ("error", "abort"):
                delta.finish_reason = out.finish_reason
            state.finish_reason = delta.finish_reason
        return delta

    def _add_logprobs(self, state: ChoiceState, delta: CompletionLogprobs, token_ids: list[int],
                      entries: list[TokenLogprob | None]) -> None:
        offset = len(state.text) + sum(len(t) for t in delta.tokens)
        for token_id, entry in zip(token_ids, entries, strict=True):
            token = serving.token_text(self.tokenizer, token_id)
            top = None if entry is None else {serving.token_text(self.tokenizer, t): v for t, v in entry.top}
            row = (token, None if entry is None else entry.logprob, top, offset)
            for target in (delta, state.logprobs):
                for name, value in zip(LOGPROB_FIELDS, row, strict=True):
                    getattr(target, name).append(value)
            offset += len(token)

    def usage(self) -> Usage:
        prompt_tokens = sum(len(p.ids) for p in self.prompts)
        completion = sum(s.num_tokens for s in self.states)
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion,
                     total_tokens=prompt_tokens + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens))
