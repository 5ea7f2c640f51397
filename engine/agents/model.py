"""How a loop talks to a model: one `chat` call, whatever serves the model.

Loops only need "send these messages (and tools), get back text and tool calls and a token count". Behind that
sits an OpenAI-compatible server (our `inkstone serve`, or anything else that speaks the API) or, in-process,
our own LLMEngine. Keeping the interface this small is what lets tests replace the model with scripted replies
and still exercise the real loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ToolCallRequest:
    """One tool call as the model wrote it; `arguments` is the raw JSON text, parsed by the loop."""

    name: str
    """The function the model wants."""
    arguments: str
    """Its arguments as JSON text (possibly malformed)."""
    id: str = ""
    """The call id the server gave it."""


@dataclass
class Reply:
    """One model turn."""

    content: str = ""
    """The text the model wrote (without tool-call markup)."""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    """Tool calls, when the model made any."""
    tokens: int = 0
    """Prompt + completion tokens of this call."""
    finish_reason: str = ""
    """As the server reported it."""


class ModelError(RuntimeError):
    """The model could not be reached or refused the request; the message says which and why."""


class ModelClient(Protocol):
    name: str

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        tool_choice: Any = None,
        stop: list[str] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout: float | None = None,
    ) -> Reply: ...


class OpenAIClient:
    """Any OpenAI-compatible chat endpoint: `inkstone serve`, vLLM, llama.cpp's server, a cloud API."""

    def __init__(self, base_url: str, model: str, api_key: str = "none", timeout: float = 300.0):
        from openai import OpenAI

        base_url = base_url.rstrip("/")
        if not base_url.endswith("/v1"):
            base_url += "/v1"
        self.name = model
        self.base_url = base_url
        self._client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0)

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        tool_choice: Any = None,
        stop: list[str] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout: float | None = None,
    ) -> Reply:
        import openai

        request: dict[str, Any] = dict(
            model=self.name, messages=messages, max_tokens=max_tokens, temperature=temperature
        )
        if tools:
            request["tools"] = tools
            if tool_choice is not None:
                request["tool_choice"] = tool_choice
        if stop:
            request["stop"] = stop
        if timeout is not None:
            request["timeout"] = timeout
        try:
            response = self._client.chat.completions.create(**request)
        except openai.APITimeoutError as exc:  # a subclass of APIConnectionError: caught first
            raise ModelError(f"model server {self.base_url} did not answer within {timeout}s") from exc
        except openai.APIConnectionError as exc:
            raise ModelError(f"model server {self.base_url} is not reachable: {exc}") from exc
        except openai.APIStatusError as exc:
            raise ModelError(f"model server {self.base_url} answered {exc.status_code}: {exc.message}") from exc
        choice = response.choices[0]
        calls = [
            ToolCallRequest(name=c.function.name, arguments=c.function.arguments or "", id=c.id or "")
            for c in choice.message.tool_calls or []
        ]
        tokens = response.usage.total_tokens if response.usage else 0
        return Reply(
            content=choice.message.content or "",
            tool_calls=calls,
            tokens=tokens,
            finish_reason=choice.finish_reason or "",
        )


class LocalEngineClient:
    """Our LLMEngine in this process: the server's chat template and tool-call parsing, without HTTP.

    The engine is not thread-safe and runs one generate at a time here; a served model is the better choice
    when several conversations share it.
    """

    def __init__(self, engine, name: str = "local"):
        self.engine = engine
        self.name = name

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        tool_choice: Any = None,
        stop: list[str] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout: float | None = None,
    ) -> Reply:
        from engine.infer import SamplingParams
        from engine.serve.chat import plan_chat
        from engine.serve.protocol import APIError, ChatCompletionRequest
        from engine.serve.tool_calls import parse_tool_calls

        body: dict[str, Any] = dict(model=self.name, messages=messages)
        if tools:
            body["tools"] = tools
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        try:
            plan = plan_chat(ChatCompletionRequest(**body), self.engine.tokenizer)
        except (APIError, ValueError) as exc:
            raise ModelError(f"the request was refused: {exc}") from exc
        # The server's plan: tool calls (forced, or started under tool_choice auto) decoded under a grammar.
        grammar = {"structured_output": plan.constraint[0]} if plan.constraint else {}
        params = SamplingParams(temperature=temperature, max_tokens=max_tokens, stop=list(stop or []), **grammar)
        try:
            result = self.engine.generate([plan.prompt_ids], params)[0]
        except ValueError as exc:  # a prompt longer than the context, a grammar the library refuses
            raise ModelError(f"the engine refused the request: {exc}") from exc
        text = result.text
        content, calls = parse_tool_calls(text) if plan.parse_tools else (text, [])
        requests = [ToolCallRequest(name=c.function.name, arguments=c.function.arguments, id=c.id) for c in calls]
        return Reply(
            content=content or "",
            tool_calls=requests,
            tokens=len(plan.prompt_ids) + len(result.token_ids),
            finish_reason="tool_calls" if requests else result.finish_reason,
        )


def parse_arguments(text: str) -> dict:
    """A call's JSON arguments as a dict; ValueError with the reason when they are not a JSON object."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
