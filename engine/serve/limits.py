"""How much one request may ask of the model server, so one client cannot stall or exhaust it.

A 10 MB body used to be read and tokenized (seconds on the event loop, every other stream stalled) before the
context check refused it; a completions call could carry a thousand prompts; a chat request without
`max_tokens` could decode until the context was full. Each limit is refused before any of that work starts.
`ServeArgs` carries the same fields (their docs feed `inkstone serve --help`); `create_app` takes this object.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_PROMPTS = 128
DEFAULT_MAX_TOKENS = 2048


@dataclass(frozen=True)
class ServeLimits:
    max_request_bytes: int = MAX_REQUEST_BYTES
    """Largest request body in bytes; a bigger one gets 413 before it is read or tokenized."""
    max_prompts: int = MAX_PROMPTS
    """Most prompts one /v1/completions request may carry (a list of prompts); more is a 400."""
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    """Output tokens for a chat request that sets no max_tokens (less when the context has less room)."""

    def check(self) -> None:
        """Raise ValueError naming the field for a limit that would refuse every request."""
        for name in ("max_request_bytes", "max_prompts", "default_max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a whole number >= 1, got {value!r}")
