"""Constrained decoding with xgrammar: compile a StructuredOutput once, match each sequence, mask each step.

The engine owns one GrammarBackend per tokenizer. A constraint compiles once (cached under the spec's key; a
JSON schema for the bundled model takes ~0.1 s) into an automaton over the tokenizer's vocabulary; every
constrained sequence gets its own matcher. Before a step runs the model, the engine asks for a TokenMask of
the rows that will sample: one bitmask row per constrained row, filled by xgrammar in C++; the sampler applies
it to those rows only (xgrammar's CPU kernel or its GPU kernel), so free rows in the same batch cost nothing.
After sampling the engine feeds the chosen token to the sequence's matcher. The matcher lives on the sequence,
not in the KV cache, so preemption (which recomputes the KV) leaves it exactly where it was.

JSON is generated compactly (`{"a": 1, "b": [2, 3]}`, no free whitespace): a small model allowed any
whitespace can loop on newlines until max_tokens.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import xgrammar as xgr
from xgrammar import structural_tag as st

from engine.infer.structured import StructuredOutput, ToolCalls

CACHE_ENTRIES = 256
"""Compiled grammars kept (least recently used dropped first); a schema-heavy server reuses a few hundred."""


@dataclass
class TokenMask:
    """The allowed next tokens of the constrained rows of one sampler call."""

    bitmask: torch.Tensor
    """[rows >= batch, ceil(vocab / 32)] int32 on the CPU; bit j of row i set = token j allowed for row i."""
    rows: list[int]
    """Which rows of the sampler's batch are constrained (the other rows are left alone)."""
    vocab_size: int
    """Width of the logits the mask covers (the model's vocab, padding included)."""

    def apply(self, logits: torch.Tensor) -> None:
        """Set disallowed tokens of the constrained rows to -inf, in place (logits: float32 [B, V])."""
        bitmask = self.bitmask.to(logits.device, non_blocking=True)
        xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=self.vocab_size, indices=self.rows)


class GrammarBackend:
    """Compiles constraints for one tokenizer and builds per-step token masks."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Iterable[int]):
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=sorted(stop_token_ids))
        # Our own LRU cache keyed by the spec replaces xgrammar's (keyed by the grammar text it would rebuild).
        self.compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        self.vocab_size = vocab_size
        self._cache: OrderedDict[str, xgr.CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._batch_filler = xgr.BatchGrammarMatcher()

    def compile(self, spec: StructuredOutput) -> xgr.CompiledGrammar:
        """The compiled grammar of spec (cached); ValueError naming the field when xgrammar refuses it."""
        key = spec.key
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            compiled = self._compile(spec)
        except (RuntimeError, ValueError, TypeError) as exc:  # xgrammar reports unsupported features this way
            raise ValueError(f"structured_output.{spec.kind}: {_first_line(exc)}") from None
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return compiled

    @staticmethod
    def new_matcher(compiled: xgr.CompiledGrammar) -> xgr.GrammarMatcher:
        """A fresh matcher at the start of a compiled grammar (one per sequence)."""
        return xgr.GrammarMatcher(compiled)

    def mask(self, matchers: list[xgr.GrammarMatcher | None]) -> TokenMask | None:
        """The mask for one sampler call whose rows have these matchers (None: a free row); None if all free."""
        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return None
        if self._bitmask.shape[0] < len(matchers):
            self._bitmask = xgr.allocate_token_bitmask(len(matchers), self.vocab_size)
        if len(rows) == 1:
            matchers[rows[0]].fill_next_token_bitmask(self._bitmask, rows[0])
        else:
            self._batch_filler.batch_fill_next_token_bitmask([matchers[i] for i in rows], self._bitmask, rows)
        return TokenMask(self._bitmask[: len(matchers)], rows, self.vocab_size)

    def _compile(self, spec: StructuredOutput) -> xgr.CompiledGrammar:
        compiler = self.compiler
        if spec.json_schema is not None:
            return compiler.compile_json_schema(spec.json_schema, any_whitespace=False,
                                                strict_mode=spec.strict_json)
        if spec.json_object:
            return compiler.compile_json_schema('{"type": "object"}', any_whitespace=False, strict_mode=False)
        if spec.regex is not None:
            return compiler.compile_regex(spec.regex)
        if spec.choice is not None:
            literals = " | ".join(json.dumps(c, ensure_ascii=False) for c in spec.choice)
            return compiler.compile_grammar(f"root ::= {literals}")
        if spec.grammar is not None:
            return compiler.compile_grammar(spec.grammar)
        return compiler.compile_structural_tag(tool_call_tag(spec.tool_calls))


def tool_call_tag(tools: ToolCalls) -> st.StructuralTag:
    """Each call `<begin>{"name": "<fn>", "arguments": <args valid for fn>}<end>`; required: only calls."""
    tags = [
        st.TagFormat(begin=f'{tools.begin}{{"name": {json.dumps(fn.name, ensure_ascii=False)}, "arguments": ',
                     content=st.JSONSchemaFormat(json_schema=json.loads(fn.parameters), max_whitespace_cnt=1),
                     end=f"}}{tools.end}")
        for fn in tools.functions
    ]
    if tools.required:
        return st.StructuralTag(format=st.TagsWithSeparatorFormat(tags=tags, separator="\n", at_least_one=True,
                                                                  stop_after_first=tools.at_most_one))
    return st.StructuralTag(format=st.TriggeredTagsFormat(triggers=[tools.begin.strip()], tags=tags,
                                                          stop_after_first=tools.at_most_one))


def _first_line(exc: Exception) -> str:
    """xgrammar's message without its log prefix ("[04:41:25] /project/cpp/regex_converter.cc:94: ")."""
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)
