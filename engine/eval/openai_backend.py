"""Evaluate a model behind any OpenAI-compatible URL (our own server, vLLM, llama.cpp's server, a cloud API).

PPL mode asks `/v1/completions` for the prompt's log-probabilities (`echo: true, logprobs: 1, max_tokens: 0`)
of the context alone and of context + continuation, and sums those of the tokens past the context's own, as
lm-eval's `local-completions` does with its tokenizer; the server must support echo. Generation uses
`/v1/completions` for base-style prompts and `/v1/chat/completions` for chat-style turns, which the server
renders with its own template, several requests in flight at once. The same backend serves as an LLM judge.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from engine.progress import Progress, check_cancel, no_progress

BATCH = 32  # prompts per completions request
CONCURRENCY = 8  # generation requests in flight at once


class ChatText(str):
    """A chat prompt on its way to /v1/chat/completions: its text (for cache keys) is the JSON of its turns."""

    messages: list[dict]

    def __new__(cls, messages: list[dict]):
        obj = super().__new__(cls, json.dumps(messages, ensure_ascii=False))
        obj.messages = messages
        return obj


class OpenAIBackend:
    def __init__(self, base_url: str, model: str = "", api_key: str = "none", timeout_s: float = 600.0,
                 max_retries: int = 2, concurrency: int = CONCURRENCY):
        from openai import OpenAI

        url = base_url.rstrip("/")
        self.client = OpenAI(base_url=url if url.endswith("/v1") else url + "/v1", api_key=api_key or "none",
                             max_retries=max_retries, timeout=timeout_s)
        self.concurrency = max(1, concurrency)
        self.model = model or self.client.models.list().data[0].id
        self.identity = f"url:{url}|{self.model}"

    def render_chat(self, messages: list[dict]) -> str:
        return ChatText(messages)

    def loglikelihood(self, pairs, progress: Progress = no_progress, cancel: threading.Event | None = None):
        out: list[tuple[float, bool]] = []
        for first in range(0, len(pairs), BATCH):
            check_cancel(cancel)
            chunk = pairs[first:first + BATCH]
            if any(isinstance(context, ChatText) for context, _ in chunk):
                raise ValueError("style: PPL scoring through a URL needs base-style prompts")
            # As lm-eval: the continuation is what the whole prompt has beyond the context's own tokens.
            contexts = list(dict.fromkeys(c.rstrip() for c, _ in chunk))
            context_len = dict(zip(contexts, [len(lp.tokens) for lp in self._echo(contexts)], strict=True))
            for (context, _), lp in zip(chunk, self._echo([c + x for c, x in chunk]), strict=True):
                out.append(_continuation_score(lp, context_len[context.rstrip()]))
            progress(fraction=len(out) / len(pairs), message=f"{len(out)}/{len(pairs)} continuations scored")
        return out

    def _echo(self, prompts: list[str]) -> list:
        """The echoed prompt log-probabilities of each prompt, in order."""
        resp = self.client.completions.create(model=self.model, prompt=prompts, max_tokens=0, echo=True, logprobs=1,
                                              temperature=0)
        return [c.logprobs for c in sorted(resp.choices, key=lambda c: c.index)]

    def generate(self, prompts, params, progress: Progress = no_progress, cancel: threading.Event | None = None):
        common = dict(model=self.model, max_tokens=params.max_tokens, temperature=params.temperature, n=params.n,
                      stop=list(params.stop)[:4] or None, seed=params.seed)

        def one(prompt) -> list[str]:
            check_cancel(cancel)
            if isinstance(prompt, ChatText):
                resp = self.client.chat.completions.create(messages=prompt.messages, **common)
                return [c.message.content or "" for c in sorted(resp.choices, key=lambda c: c.index)]
            resp = self.client.completions.create(prompt=prompt, **common)
            return [c.text or "" for c in sorted(resp.choices, key=lambda c: c.index)]

        # Several requests in flight, as servers batch them (OpenCompass's judges run concurrently too); the
        # answers come back in prompt order, and the first failure ends the call.
        out: list[list[str]] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for texts in pool.map(one, prompts):
                out.append(texts)
                progress(fraction=len(out) / len(prompts), message=f"{len(out)}/{len(prompts)} prompts generated")
        return out


def _continuation_score(logprobs, context_tokens: int) -> tuple[float, bool]:
    """Sum and greediness of the echoed log-probabilities after the first `context_tokens` tokens."""
    tokens = logprobs.tokens[context_tokens:]
    if not tokens:
        raise ValueError("the server's echoed log-probabilities cover no continuation token")
    values = logprobs.token_logprobs[context_tokens:]
    tops = (logprobs.top_logprobs or [None] * len(logprobs.tokens))[context_tokens:]
    greedy = all(not top or max(top, key=top.get) == token for token, top in zip(tokens, tops, strict=True))
    return float(sum(v for v in values if v is not None)), greedy
