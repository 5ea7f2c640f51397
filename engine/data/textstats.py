"""Words, lines and script counts that work for Chinese as well as English.

Rules written for English count space-separated words; Chinese has no spaces, so here every CJK character is
a word of its own and every run of letters/digits in other scripts is one word. Length rules can then use the
same thresholds for both languages without splitting on spaces.

Character classes are counted with a lookup table over code points (numpy) instead of a Python loop per
character, and the word list of a text is memoised, because every rule asks for both and they dominate the
cost of a record.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# CJK unified ideographs (+ ext. A, compatibility), kana and hangul: one character, one word.
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
WORD_RE = re.compile(rf"[{CJK}]|[^\s{CJK}]+")
CJK_RE = re.compile(rf"[{CJK}]")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", "…", "」", "』", "）", ")", ":", "：", ";", "；")
SENTENCE_END_RE = re.compile(r"[.!?。！？]+(?=\s|$|[\"'”’」』）)])|[。！？]")

STOP_WORDS = {
    "en": frozenset({
        "the", "be", "to", "of", "and", "that", "have", "with", "a", "in", "is", "it", "for", "on", "as", "was",
        "are", "this", "not", "you", "at", "by", "from"
    }),
    "zh": frozenset({
        "的", "了", "是", "在", "和", "有", "我", "不", "这", "也", "就",
        "人", "都", "一", "他", "们", "个", "上", "中", "到", "说",
        "要", "会", "对", "与", "为", "以"
    }),
}


DIGIT, SYMBOL, UPPER, CASED, SPACE, CJK_CHAR, ALPHA = 1, 2, 4, 8, 16, 32, 64
TABLE_SIZE = 0x30000  # through CJK extension B; rarer code points count as "other"


def _build_table() -> np.ndarray:
    table = np.zeros(TABLE_SIZE, dtype=np.uint8)
    for cp in range(TABLE_SIZE - 1):
        c = chr(cp)
        flags = DIGIT * c.isdigit() | SPACE * c.isspace() | ALPHA * c.isalpha()
        if unicodedata.category(c).startswith("S"):
            flags |= SYMBOL
        if c.lower() != c.upper():
            flags |= CASED | UPPER * c.isupper()
        table[cp] = flags
    for lo, hi in re.findall(r"(.)-(.)", CJK):
        table[ord(lo):ord(hi) + 1] |= CJK_CHAR
    return table


_TABLE = _build_table()


@dataclass(frozen=True)
class CharCounts:
    total: int
    digits: int
    symbols: int
    upper: int
    cased: int
    spaces: int
    cjk: int
    alpha: int

    @property
    def non_space(self) -> int:
        return self.total - self.spaces


@lru_cache(maxsize=8)
def char_counts(text: str) -> CharCounts:
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    flags = _TABLE[np.minimum(cps, TABLE_SIZE - 1)]
    n = [int(np.count_nonzero(flags & bit)) for bit in (DIGIT, SYMBOL, UPPER, CASED, SPACE, CJK_CHAR, ALPHA)]
    return CharCounts(len(cps), *n)


@lru_cache(maxsize=8)
def words(text: str) -> list[str]:
    """Space-separated tokens, with each CJK character a token of its own (memoised: do not modify)."""
    return WORD_RE.findall(text)


def is_cjk_text(text: str, min_share: float = 0.3) -> bool:
    """Whether CJK characters are at least min_share of the non-space characters."""
    counts = char_counts(text)
    return counts.non_space > 0 and counts.cjk / counts.non_space >= min_share


def lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def sentence_count(text: str) -> int:
    return len(SENTENCE_END_RE.findall(text))


def strip_punct(word: str) -> str:
    return word.strip(".,;:!?\"'()[]{}“”‘’，。；：！？、（）《》「」")
