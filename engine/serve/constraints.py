"""Which output constraint an API request asks for: `response_format`, `tools` + `tool_choice`, and vLLM's extras.

The engine decodes under a grammar (engine/infer/structured_grammar.py), so what OpenAI calls JSON mode,
structured outputs and forced tool calls is valid by construction here, as in vLLM and SGLang. This module
only maps request fields onto the engine's StructuredOutput and compiles it before the request is queued, so
a schema feature the grammar library does not support is a 400 whose `param` names the request field.

Precedence: vLLM's extras (`guided_*` or `structured_outputs`) or `response_format` (at most one of them), else
tools: `tool_choice` "required" or a named function gives only calls (the named one: exactly one call);
"auto" gives free text in which a call the model opens with `<tool_call>` is completed under the grammar.
One call per answer unless the request sets `parallel_tool_calls: true`: a small model that may add another
call keeps adding them until max_tokens.
"""

from __future__ import annotations

import json

from engine.infer.structured import StructuredOutput, ToolCalls, ToolFunction
from engine.serve.protocol import APIError, ChatCompletionRequest, NamedToolChoice, SamplingFields

GUIDED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
"""vLLM's older per-kind extras; `structured_outputs: {json|regex|choice|grammar|json_object}` is the newer one."""


def _dumps(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def extras_constraint(req: SamplingFields) -> tuple[StructuredOutput, str] | None:
    """The constraint of vLLM's extras, with the field it came from; None when none is set."""
    given = {name: getattr(req, name) for name in GUIDED_FIELDS if getattr(req, name) is not None}
    if req.structured_outputs is not None:
        for key, value in req.structured_outputs.model_dump(exclude_none=True, by_alias=True).items():
            if value is not False:
                given[f"structured_outputs.{key}"] = value
    if not given:
        return None
    if len(given) > 1:
        raise APIError(f"only one output constraint may be given, got {', '.join(given)}", param=list(given)[1])
    [(name, value)] = given.items()
    kind = name.removeprefix("guided_").removeprefix("structured_outputs.")
    if kind == "json":
        spec = StructuredOutput.from_schema(value)
    elif kind == "json_object":
        spec = StructuredOutput(json_object=True)
    elif kind == "choice":
        spec = StructuredOutput(choice=tuple(value))
    else:
        spec = StructuredOutput(**{kind: value})
    return spec, name


def chat_constraint(req: ChatCompletionRequest) -> tuple[StructuredOutput, str] | None:
    """The constraint a chat request asks for, with the field it came from; None for free text."""
    extra = extras_constraint(req)
    wants_format = req.response_format is not None and req.response_format.type != "text"
    if extra is not None and wants_format:
        raise APIError(f"response_format and {extra[1]} both constrain the output; give one", param=extra[1])
    if extra is not None:
        return extra
    choice = req.tool_choice or "auto"
    forced = choice == "required" or isinstance(choice, NamedToolChoice)
    if wants_format and not forced:
        return _response_format(req), "response_format"
    if not req.tools or choice == "none":
        return None
    functions = req.tools
    if isinstance(choice, NamedToolChoice):
        functions = [t for t in req.tools if t.function.name == choice.function.name]
    calls = ToolCalls(
        functions=tuple(ToolFunction(t.function.name, _dumps(t.function.parameters or {"type": "object"}))
                        for t in functions),
        required=forced, at_most_one=isinstance(choice, NamedToolChoice) or req.parallel_tool_calls is not True)
    return StructuredOutput(tool_calls=calls), "tools"


def _response_format(req: ChatCompletionRequest) -> StructuredOutput:
    fmt = req.response_format
    if fmt.type == "json_object":
        return StructuredOutput(json_object=True)
    if not fmt.json_schema or "schema" not in fmt.json_schema:
        raise APIError("response_format json_schema needs json_schema.schema", param="response_format")
    # Only an explicit `strict: false` lets unnamed properties in: a small model allowed them keeps adding more.
    return StructuredOutput.from_schema(fmt.json_schema["schema"], strict=fmt.json_schema.get("strict") is not False)


async def compile_constraint(engine, found: tuple[StructuredOutput, str] | None) -> StructuredOutput | None:
    """Compile the constraint in the engine core, where the matchers live, before the request is queued (cached
    after the first time); a 400 naming the field if the grammar library refuses it."""
    if found is None:
        return None
    spec, param = found
    try:
        await engine.compile_structured(spec)
    except ValueError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise APIError(f"{param}: unsupported or invalid constraint: {detail}", param=param) from None
    return spec
