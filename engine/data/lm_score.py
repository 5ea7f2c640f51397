"""Model-based quality: perplexity under a small causal LM, the signal CCNet filters web text with.

Fluent prose scores low, boilerplate, keyword spam and mojibake score high. Any registered model folder works;
the bundled SmolLM2-135M scores a few hundred tokens a second per core, so the step is opt-in and reads only
the first `max_tokens` tokens of each record. The model loads once per worker process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=2)
def _model(path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)  # one process per core already
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


def perplexity(model_path: str, text: str, max_tokens: int = 256) -> float:
    """exp(mean negative log-likelihood) of the text's first max_tokens tokens; inf when there is nothing to score."""
    import torch

    model, tokenizer = _model(model_path)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :max_tokens]
    if ids.shape[1] < 2:
        return math.inf
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    return math.exp(float(loss))


@dataclass
class LmPerplexity:
    model: str = ""
    """A causal LM folder (a registered model's folder) to score with."""
    max_perplexity: float = 0.0
    """Drop records above this perplexity (0 keeps all and only labels them with `perplexity`)."""
    max_tokens: int = 256
    """Tokens scored per record (its beginning)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: give a model folder to score perplexity with")
        if not (Path(self.model) / "config.json").is_file():
            raise ValueError(f"model: {self.model} has no config.json")
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens: must be at least 2, got {self.max_tokens}")

    def apply(self, rec: dict) -> str | None:
        ppl = perplexity(self.model, rec["text"], self.max_tokens)
        rec["perplexity"] = round(ppl, 3) if math.isfinite(ppl) else None
        return "high_perplexity" if self.max_perplexity and not ppl <= self.max_perplexity else None
