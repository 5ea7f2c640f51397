"""What a request's output must look like: a JSON schema, any JSON, a regex, one of some strings, a grammar, or
tool calls in the model's tag format.

Constrained decoding (structured_grammar.py) turns one of these into a token mask per step, so the output is
valid by construction instead of asked for in the prompt. This module holds only the plain description —
no grammar library — so SamplingParams, the server and evaluation can build and check one cheaply, and `key`
gives the identity under which its compiled grammar is cached.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

TOOL_CALL_BEGIN = "<tool_call>\n"
"""Hermes/Qwen tool-call opening, as engine/serve/tool_calls.py parses it."""
TOOL_CALL_END = "\n</tool_call>"
"""Hermes/Qwen tool-call closing."""


@dataclass(frozen=True)
class ToolFunction:
    name: str
    """The function's name, written verbatim into the call."""
    parameters: str = '{"type": "object"}'
    """JSON Schema of the arguments object, as a JSON string (hashable, so the spec can be a cache key)."""


@dataclass(frozen=True)
class ToolCalls:
    functions: tuple[ToolFunction, ...]
    """The functions a call may name."""
    required: bool = True
    """True: the whole output is one or more calls. False: free text, and a call the model starts (its opening
    tag) is completed under the constraint."""
    at_most_one: bool = False
    """Stop after the first call (a named tool_choice, or parallel_tool_calls false)."""
    begin: str = TOOL_CALL_BEGIN
    """Text that opens a call; `{"name": ..., "arguments": ...}` follows it."""
    end: str = TOOL_CALL_END
    """Text that closes a call."""


@dataclass(frozen=True)
class StructuredOutput:
    """Exactly one field set: the kind of constraint and its argument."""

    json_schema: str | None = None
    """A JSON Schema (as a JSON string); the output is one JSON value valid against it."""
    json_object: bool = False
    """The output is any JSON object."""
    regex: str | None = None
    """The output matches this regular expression as a whole."""
    choice: tuple[str, ...] | None = None
    """The output is exactly one of these strings."""
    grammar: str | None = None
    """An EBNF grammar (xgrammar's dialect, GBNF-like, start rule `root`)."""
    tool_calls: ToolCalls | None = None
    """Tool calls in the model's `<tool_call>` format, arguments constrained by each function's schema."""
    strict_json: bool = True
    """For JSON schemas: refuse properties the schema does not name where it leaves additionalProperties unset
    (OpenAI's strict mode); False follows JSON Schema's default of allowing them."""

    @classmethod
    def from_schema(cls, schema: dict | str, strict: bool = True) -> StructuredOutput:
        """A json_schema constraint from a dict (or its JSON text); key order is kept, since the grammar writes
        properties in the order the schema declares them."""
        text = schema if isinstance(schema, str) else json.dumps(schema, ensure_ascii=False)
        return cls(json_schema=text, strict_json=strict)

    @property
    def kind(self) -> str:
        return _kinds(self)[0]

    @property
    def key(self) -> str:
        """Stable identity of the constraint: equal keys compile to the same grammar."""
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    def validate(self) -> None:
        """Raise ValueError naming the field when the spec is malformed (compiling finds unsupported features)."""
        kinds = _kinds(self)
        if len(kinds) != 1:
            raise ValueError(f"structured_output: exactly one of json_schema, json_object, regex, choice, grammar, "
                             f"tool_calls must be set, got {kinds or 'none'}")
        if self.json_schema is not None:
            _json_field(self.json_schema, "structured_output.json_schema")
        if self.choice is not None and (not self.choice or not all(isinstance(c, str) and c for c in self.choice)):
            raise ValueError("structured_output.choice: must be a non-empty list of non-empty strings")
        for name in ("regex", "grammar"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"structured_output.{name}: must be a non-empty string")
        if self.tool_calls is not None:
            if not self.tool_calls.functions:
                raise ValueError("structured_output.tool_calls: needs at least one function")
            for i, fn in enumerate(self.tool_calls.functions):
                if not isinstance(fn.name, str) or not fn.name:
                    raise ValueError(f"structured_output.tool_calls.functions[{i}].name: must be a non-empty string")
                _json_field(fn.parameters, f"structured_output.tool_calls.functions[{i}].parameters")


def _kinds(spec: StructuredOutput) -> list[str]:
    values = dict(json_schema=spec.json_schema is not None, json_object=spec.json_object,
                  regex=spec.regex is not None, choice=spec.choice is not None, grammar=spec.grammar is not None,
                  tool_calls=spec.tool_calls is not None)
    return [name for name, present in values.items() if present]


def _json_field(text: str, name: str) -> None:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, (dict, bool)):
        raise ValueError(f"{name}: a JSON Schema must be an object, got {type(value).__name__}")
    outside = _outside_ref(value, "")
    if outside is not None:
        ref, where = outside
        # xgrammar only warns on such a reference and lets any JSON value stand in for it, which would drop the
        # constraint there without a word; nothing is ever fetched.
        raise ValueError(f"{name}: $ref {ref!r} at {where or 'the top level'} points outside the schema; only "
                         f"references within it ('#' or '#/...', e.g. '#/$defs/item') are supported")


# Keywords whose values are data, not schemas: a {"$ref": ...} inside them is an example value, not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def _outside_ref(schema: object, where: str) -> tuple[str, str] | None:
    """The first $ref in schema that is not a JSON pointer into the schema itself, and its path ("properties.a")."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref != "#" and not ref.startswith("#/"):
            return ref, where
        children = ((f"{where}.{key}" if where else key, child) for key, child in schema.items()
                    if key not in _DATA_KEYWORDS)
    elif isinstance(schema, list):
        children = ((f"{where}[{i}]", child) for i, child in enumerate(schema))
    else:
        return None
    for path, child in children:
        found = _outside_ref(child, path)
        if found is not None:
            return found
    return None

