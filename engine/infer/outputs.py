"""What the engine hands back: streaming deltas per step and whole results for offline batches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenLogprob:
    token_id: int
    """The token this entry is about (the chosen or the given prompt token)."""
    logprob: float
    """Its log-probability under the model's raw distribution."""
    top: list[tuple[int, float]]
    """The top-k (token_id, logprob) alternatives, best first."""


@dataclass
class RequestOutput:
    """One per sequence per step that produced something."""

    request_id: str
    """The id add_request returned."""
    index: int
    """Which of the request's n samples this is."""
    new_token_ids: list[int]
    """Tokens since this sequence's previous output."""
    new_text: str
    """Incremental detokenized text; stop strings already removed."""
    finished: bool
    """True on the sequence's last output."""
    finish_reason: str | None
    """"stop" | "length" | "abort" | "error" once finished."""
    error: str | None = None
    """Why the request failed, with finish_reason "error"."""
    logprobs: list[TokenLogprob] | None = None
    """One entry per new token, when the request asked for logprobs."""
    prompt_logprobs: list[TokenLogprob | None] | None = None
    """In the first output only; the first entry is None (nothing predicts the first token)."""
    num_prompt_tokens: int = 0
    """Length of the prompt in tokens."""
    num_cached_tokens: int = 0
    """Prompt tokens served by the prefix cache."""
    num_output_tokens: int = 0
    """Tokens generated so far by this sequence."""


@dataclass
class GenerationResult:
    """One finished sample of an offline `LLMEngine.generate` call."""

    text: str
    """The generated text, stop strings removed."""
    token_ids: list[int]
    """The generated tokens (a final EOS / stop token included)."""
    finish_reason: str
    """"stop" | "length" | "abort" | "error"."""
    num_cached_tokens: int
    """Prompt tokens served by the prefix cache."""
