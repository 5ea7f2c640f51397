"""Recipes: an ordered list of steps with their parameters, loaded from a preset name or a JSON file.

Record steps (cleaning, filters, PII, token counts) run per record inside the shard workers, in recipe order;
dedup steps need the whole corpus and run after them; output steps (format, split) come last. A recipe that
puts them in another order is refused rather than silently reordered. The resolved recipe (every parameter,
defaults filled in) is saved with the output so the dataset can be rebuilt.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from engine.data.filters import C4Lines, GopherQuality, GopherRepetition, Length, StopWords, SymbolRatio
from engine.data.langid import LanguageId
from engine.data.lm_score import LmPerplexity
from engine.data.normalize import Normalize, QualityScore
from engine.data.pii import ScrubPii

PRESETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "recipes"


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@dataclass
class Tokenize:
    tokenizer: str = ""
    """A tokenizer folder (a registered model's folder) to count tokens with."""
    min_tokens: int = 0
    """Drop records with fewer tokens (0: no limit)."""
    max_tokens: int = 0
    """Drop records with more tokens (0: no limit)."""

    def __post_init__(self) -> None:
        if not self.tokenizer:
            raise ValueError("tokenizer: give a model folder to count tokens with")
        if not (Path(self.tokenizer) / "tokenizer_config.json").is_file():
            raise ValueError(f"tokenizer: {self.tokenizer} has no tokenizer_config.json")

    def apply(self, rec: dict) -> str | None:
        n = len(_tokenizer(self.tokenizer)(rec["text"], add_special_tokens=False)["input_ids"])
        rec["n_tokens"] = n
        if self.min_tokens and n < self.min_tokens:
            return "too_few_tokens"
        if self.max_tokens and n > self.max_tokens:
            return "too_many_tokens"
        return None


@dataclass
class ExactDedup:
    ignore_case_and_space: bool = True
    """Compare texts lower-cased with whitespace removed."""


@dataclass
class MinhashDedup:
    threshold: float = 0.8
    """Estimated Jaccard similarity of character n-gram sets above which two records are near duplicates."""
    ngram: int = 5
    """Shingle size in characters (works for Chinese, which has no spaces)."""
    num_perm: int = 112
    """Hash functions in a signature (more: closer estimates, slower)."""
    seed: int = 1
    """Seed of the hash functions."""


@dataclass
class Format:
    kind: str = "text"
    """text (one record each), messages (SFT: prompt + text as user/assistant turns), packed (pretraining)."""
    pack_tokens: int = 2048
    """Packed records hold about this many tokens (counted by the tokenize step, else estimated as chars/3)."""
    separator: str = "\n\n"
    """Put between documents packed into one record."""
    write_as: str = "jsonl"
    """Output file format: jsonl or parquet."""

    def __post_init__(self) -> None:
        if self.kind not in ("text", "messages", "packed"):
            raise ValueError(f"kind: must be text, messages or packed, got {self.kind!r}")
        if self.write_as not in ("jsonl", "parquet"):
            raise ValueError(f"write_as: must be jsonl or parquet, got {self.write_as!r}")


@dataclass
class Split:
    val_fraction: float = 0.01
    """Share of records written to the validation file (chosen by a hash of the text, so stable)."""


RECORD_STEPS = {"normalize": Normalize, "language_id": LanguageId, "length": Length,
                "gopher_quality": GopherQuality, "gopher_repetition": GopherRepetition,
                "symbol_ratio": SymbolRatio, "stop_words": StopWords, "c4_lines": C4Lines,
                "quality_score": QualityScore, "lm_perplexity": LmPerplexity, "scrub_pii": ScrubPii,
                "tokenize": Tokenize}
DEDUP_STEPS = {"exact_dedup": ExactDedup, "minhash_dedup": MinhashDedup}
OUTPUT_STEPS = {"format": Format, "split": Split}
STEPS = {**RECORD_STEPS, **DEDUP_STEPS, **OUTPUT_STEPS}
STAGE = {**{k: 0 for k in RECORD_STEPS}, **{k: 1 for k in DEDUP_STEPS}, **{k: 2 for k in OUTPUT_STEPS}}


@dataclass
class Recipe:
    name: str
    steps: list[tuple[str, object]] = field(default_factory=list)  # (step name, its parameter dataclass)
    description: str = ""

    def step(self, name: str):
        return next((params for n, params in self.steps if n == name), None)

    def record_steps(self) -> list[tuple[str, object]]:
        return [(n, p) for n, p in self.steps if STAGE[n] == 0]

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description,
                "steps": [{"step": n, **dataclasses.asdict(p)} for n, p in self.steps]}


def parse_recipe(data: dict, name: str = "") -> Recipe:
    """A Recipe from its JSON form; ValueError names the step (by position) and the field."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ValueError("recipe: must be an object with a list of steps")
    steps: list[tuple[str, object]] = []
    for i, raw in enumerate(data["steps"], start=1):
        if not isinstance(raw, dict) or raw.get("step") not in STEPS:
            raise ValueError(f"recipe: step {i}: unknown step {raw.get('step') if isinstance(raw, dict) else raw!r}"
                             f" (known: {', '.join(STEPS)})")
        step = raw["step"]
        params = {k: v for k, v in raw.items() if k != "step"}
        cls = STEPS[step]
        unknown = set(params) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"recipe: step {i} ({step}): unknown parameter(s) {', '.join(sorted(unknown))}")
        try:
            parsed = TypeAdapter(cls).validate_python(params)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"recipe: step {i} ({step}): {where}: {err['msg']}") from None
        except ValueError as e:
            raise ValueError(f"recipe: step {i} ({step}): {e}") from None
        if steps and STAGE[step] < STAGE[steps[-1][0]]:
            raise ValueError(f"recipe: step {i} ({step}) must come before dedup and output steps")
        if any(n == step for n, _ in steps) and STAGE[step] > 0:
            raise ValueError(f"recipe: step {i} ({step}) appears twice")
        steps.append((step, parsed))
    return Recipe(name=data.get("name") or name, steps=steps, description=data.get("description", ""))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_recipe(ref: str) -> Recipe:
    """A preset by name (assets/recipes/NAME.json) or a recipe JSON file by path."""
    path = PRESETS_DIR / f"{ref}.json" if ref in preset_names() else Path(ref).expanduser()
    if not path.is_file():
        raise ValueError(f"recipe: {ref!r} is neither a preset ({', '.join(preset_names())}) nor a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"recipe: {path} is not valid JSON: {e}") from None
    return parse_recipe(data, name=path.stem)
