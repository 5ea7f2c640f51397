"""Unicode and whitespace normalization, and a simple quality score.

Normalization runs before the rules so they see one spelling of each character: NFKC folds full-width Latin
letters and digits (common in Chinese text) to ASCII, control characters go, runs of spaces and blank lines
shrink. `ftfy` would also repair mojibake; it is not used because records are already decoded as strict UTF-8
by the readers (undecodable lines are skipped and counted), which leaves little for it to fix.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from engine.data.textstats import STOP_WORDS, is_cjk_text, lines, strip_punct, words

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u3000]+")
_BLANKS_RE = re.compile(r"\n{3,}")


@dataclass
class Normalize:
    form: str = "NFKC"
    """Unicode normal form (NFC, NFKC …); empty leaves characters as they are."""
    collapse_spaces: bool = True
    """Shrink runs of spaces and tabs (and full-width spaces) to one space, and strip each line."""
    max_blank_lines: int = 1
    """Most blank lines kept in a row."""

    def apply(self, rec: dict) -> str | None:
        text = rec["text"].replace("\r\n", "\n").replace("\r", "\n")
        if self.form:
            text = unicodedata.normalize(self.form, text)
        text = _CONTROL_RE.sub("", text)
        if self.collapse_spaces:
            text = "\n".join(_SPACES_RE.sub(" ", line).strip() for line in text.split("\n"))
        text = _BLANKS_RE.sub("\n" * (self.max_blank_lines + 1), text).strip()
        rec["text"] = text
        return None if text else "empty"


def quality_score(text: str) -> float:
    """A heuristic score in (0, 1), not a learned model: a logistic of hand-set weights over signs of prose —
    stop-word share, lines ending in punctuation, distinct-word share and (for Latin text) mean word length near
    five. It orders clean prose above lists, logs and spam well enough to cut the tail."""
    ws = words(text.lower())
    if not ws:
        return 0.0
    cjk = is_cjk_text(text)
    stop = STOP_WORDS["zh"] if cjk else STOP_WORDS["en"]
    stop_share = sum(1 for w in ws if strip_punct(w) in stop) / len(ws)
    ls = lines(text) or [text]
    punct_lines = sum(line.rstrip()[-1:] in ".!?。！？”\"" for line in ls) / len(ls)
    distinct = len(set(ws)) / len(ws)
    shape = 0.0 if cjk else -abs(sum(len(w) for w in ws) / len(ws) - 5.0) / 3.0
    z = -3.0 + 8.0 * min(stop_share, 0.4) + 2.0 * punct_lines + 1.5 * distinct + shape
    return 1 / (1 + math.exp(-z))


@dataclass
class QualityScore:
    min_score: float = 0.5
    """Drop records scoring below this (0 keeps all and only labels them with `quality`)."""

    def apply(self, rec: dict) -> str | None:
        score = quality_score(rec["text"])
        rec["quality"] = round(score, 4)
        return "low_quality_score" if score < self.min_score else None
