"""How one request wants its tokens chosen and when it wants to stop.

A plain dataclass so the server, the CLI and the offline `generate` share one definition; `validate` turns a bad
value into a ValueError that names the field, which the server passes on as a 400.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.infer.structured import StructuredOutput


@dataclass
class SamplingParams:
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability sums to top_p."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 turns it off."""
    min_p: float = 0.0
    """Drop tokens whose probability is below min_p times the most likely token's."""
    repetition_penalty: float = 1.0
    """HF-style: divides positive and multiplies negative logits of tokens seen in prompt or output."""
    frequency_penalty: float = 0.0
    """OpenAI-style: subtracts this times the count of each token in the output so far."""
    presence_penalty: float = 0.0
    """OpenAI-style: subtracts this once from every token already present in the output."""
    seed: int | None = None
    """Seed of this request's own random generator: same seed, same output."""
    max_tokens: int = 256
    """Most tokens to generate."""
    stop: list[str] = field(default_factory=list)
    """Stop strings; the text is cut before the first one and it is not returned."""
    stop_token_ids: list[int] = field(default_factory=list)
    """Token ids that end generation (in addition to EOS)."""
    ignore_eos: bool = False
    """Keep generating past the model's end-of-sequence token."""
    n: int = 1
    """Number of independent samples for this prompt."""
    logprobs: int | None = None
    """None: off; k >= 0: return the chosen token's log-probability and the top-k alternatives."""
    prompt_logprobs: int | None = None
    """Same as logprobs, for the prompt tokens (teacher-forced)."""
    structured_output: StructuredOutput | None = None
    """Constrain the output to a JSON schema, any JSON object, a regex, a choice, a grammar or tool calls."""

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        _check(self.temperature, "temperature", lambda v: v >= 0, "must be >= 0")
        _check(self.top_p, "top_p", lambda v: 0 < v <= 1, "must be in (0, 1]")
        _check(self.min_p, "min_p", lambda v: 0 <= v <= 1, "must be in [0, 1]")
        _check(self.repetition_penalty, "repetition_penalty", lambda v: v > 0, "must be > 0")
        _check(self.frequency_penalty, "frequency_penalty", lambda v: -2 <= v <= 2, "must be in [-2, 2]")
        _check(self.presence_penalty, "presence_penalty", lambda v: -2 <= v <= 2, "must be in [-2, 2]")
        _check_int(self.top_k, "top_k", lambda v: v >= 0, "must be >= 0 (0 = off)")
        _check_int(self.max_tokens, "max_tokens", lambda v: v >= 1, "must be >= 1")
        _check_int(self.n, "n", lambda v: v >= 1, "must be >= 1")
        if self.seed is not None:
            _check_int(self.seed, "seed", lambda v: True, "")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None:
                _check_int(value, name, lambda v: 0 <= v <= 20, "must be between 0 and 20")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop: must be a list of non-empty strings, got {self.stop!r}")
        if not isinstance(self.stop_token_ids, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.stop_token_ids
        ):
            raise ValueError(f"stop_token_ids: must be a list of token ids >= 0, got {self.stop_token_ids!r}")
        if self.structured_output is not None:
            if not isinstance(self.structured_output, StructuredOutput):
                kind = type(self.structured_output).__name__
                raise ValueError(f"structured_output: must be a StructuredOutput, got {kind}")
            self.structured_output.validate()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _check(value, name: str, ok, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name}: {rule}, got {value!r}")


def _check_int(value, name: str, ok, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if not ok(value):
        raise ValueError(f"{name}: {rule}, got {value!r}")
