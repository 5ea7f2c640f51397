"""Language identification with py3langid (its naive-Bayes model ships inside the PyPI wheel, so it works
offline), plus a script count that marks mixed Chinese–English records.

The classifier names the main language; a record whose minority script (CJK vs Latin letters) holds at least
`mixed_share` of its letters is also marked `mixed`, since code-switched text is common in Chinese corpora and
a user may want to keep or drop it on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from engine.data.textstats import char_counts


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str, sample_chars: int = 1000) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the main language of text's first sample_chars characters."""
    lang, score = _identifier().classify(text[:sample_chars])
    return lang, float(score)


def cjk_share(text: str) -> float:
    """CJK characters among all letters (CJK + other alphabetic characters)."""
    counts = char_counts(text)
    return counts.cjk / counts.alpha if counts.alpha else 0.0


@dataclass
class LanguageId:
    languages: list[str] = field(default_factory=lambda: ["zh", "en"])
    """Languages to keep (ISO 639-1); empty keeps every language and only labels it."""
    min_score: float = 0.5
    """Drop records whose main language is less certain than this."""
    mixed_share: float = 0.2
    """Mark a record mixed when its minority script (CJK vs. Latin letters) holds at least this share."""
    keep_mixed: bool = True
    """Keep mixed Chinese–English records even when the classifier is unsure."""
    sample_chars: int = 1000
    """Characters from the start of the text given to the classifier."""

    def apply(self, rec: dict) -> str | None:
        text = rec["text"]
        lang, score = detect(text, self.sample_chars)
        share = cjk_share(text[:self.sample_chars])
        mixed = min(share, 1 - share) >= self.mixed_share
        if mixed and lang not in ("zh", "en"):  # code-switched text confuses the classifier: go by script
            lang = "zh" if share >= 0.5 else "en"
        rec["lang"], rec["lang_score"], rec["mixed"] = lang, round(score, 4), mixed
        if self.languages and lang not in self.languages:
            return "language_not_wanted"
        if score < self.min_score and not (mixed and self.keep_mixed):
            return "language_unsure"
        return None
