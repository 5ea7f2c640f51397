"""Rule filters: length, Gopher quality and repetition, symbol/digit ratios, stop words, C4 line rules.

Each filter is a dataclass of its thresholds (the recipe's parameters) whose `apply(record)` returns None to keep
the record or a reason code to drop it; C4 may also rewrite the text (it removes lines). Words come from
`textstats.words`, so a Chinese character counts as a word and the thresholds hold for both languages.
The rules follow Gopher (Rae et al. 2021) and C4 (Raffel et al. 2020) as datatrove implements them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from engine.data.textstats import (
    STOP_WORDS,
    TERMINAL_PUNCT,
    char_counts,
    is_cjk_text,
    lines,
    sentence_count,
    strip_punct,
    words,
)

_ALPHA_RE = re.compile(r"[^\W\d_]")


@dataclass
class Length:
    min_chars: int = 20
    """Drop records with fewer non-space characters."""
    max_chars: int = 1_000_000
    """Drop records with more characters."""
    min_words: int = 0
    """Drop records with fewer words (a Chinese character is a word)."""

    def apply(self, rec: dict) -> str | None:
        text = rec["text"]
        if char_counts(text).non_space < self.min_chars:
            return "too_short"
        if len(text) > self.max_chars:
            return "too_long"
        if self.min_words and len(words(text)) < self.min_words:
            return "too_few_words"
        return None


@dataclass
class GopherQuality:
    min_words: int = 50
    """Fewest words (CJK characters count one each)."""
    max_words: int = 100_000
    """Most words."""
    min_mean_word_len: float = 3.0
    """Shortest mean word length (skipped for Chinese, where a word is one character)."""
    max_mean_word_len: float = 10.0
    """Longest mean word length (skipped for Chinese)."""
    max_symbol_word_ratio: float = 0.1
    """Most '#' and '…' per word."""
    max_bullet_lines_ratio: float = 0.9
    """Most lines starting with a bullet."""
    max_ellipsis_lines_ratio: float = 0.3
    """Most lines ending with an ellipsis."""
    min_alpha_words_ratio: float = 0.8
    """Fewest words holding a letter (CJK characters are letters)."""

    def apply(self, rec: dict) -> str | None:
        text = rec["text"]
        ws = words(text)
        if len(ws) < self.min_words:
            return "gopher_few_words"
        if len(ws) > self.max_words:
            return "gopher_many_words"
        if not is_cjk_text(text):
            mean = sum(map(len, ws)) / len(ws) - sum(map(text.count, ".,;:!?\"'")) / len(ws)  # punctuation left out
            if not self.min_mean_word_len <= mean <= self.max_mean_word_len:
                return "gopher_mean_word_length"
        symbols = text.count("#") + text.count("...") + text.count("…")
        if symbols / len(ws) > self.max_symbol_word_ratio:
            return "gopher_symbol_ratio"
        ls = lines(text) or [text]
        if sum(line.lstrip().startswith(("•", "-", "*", "·", "●", "▪")) for line in ls) / len(ls) \
                > self.max_bullet_lines_ratio:
            return "gopher_bullet_lines"
        if sum(line.rstrip().endswith(("...", "…")) for line in ls) / len(ls) > self.max_ellipsis_lines_ratio:
            return "gopher_ellipsis_lines"
        if sum(1 for w in ws if _ALPHA_RE.search(w)) / len(ws) < self.min_alpha_words_ratio:
            return "gopher_alpha_words"
        return None


def _dup_fraction(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in them)."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        seen.add(item)
    total_chars = sum(len(i) for i in items) or 1
    return dup_items / max(len(items), 1), dup_chars / total_chars


@dataclass
class GopherRepetition:
    max_dup_line_ratio: float = 0.3
    """Most lines that repeat an earlier line."""
    max_dup_para_ratio: float = 0.3
    """Most paragraphs that repeat an earlier paragraph."""
    max_dup_line_char_ratio: float = 0.2
    """Most characters in repeated lines."""
    max_dup_para_char_ratio: float = 0.2
    """Most characters in repeated paragraphs."""
    top_ngram_ratios: dict[int, float] = field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    """n → most characters covered by the most frequent n-gram of words."""
    dup_ngram_ratios: dict[int, float] = field(default_factory=lambda: {5: 0.15, 7: 0.13, 10: 0.1})
    """n → most characters covered by repeated n-grams of words."""

    def apply(self, rec: dict) -> str | None:
        text = rec["text"]
        paras = [p for p in text.split("\n\n") if p.strip()]
        ratio, char_ratio = _dup_fraction(paras)
        if ratio > self.max_dup_para_ratio or char_ratio > self.max_dup_para_char_ratio:
            return "repetition_paragraphs"
        ratio, char_ratio = _dup_fraction(lines(text))
        if ratio > self.max_dup_line_ratio or char_ratio > self.max_dup_line_char_ratio:
            return "repetition_lines"
        ws = words(text)
        if len(ws) < 2:
            return None
        vocab: dict[str, int] = {}
        ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in ws), dtype=np.uint64, count=len(ws))
        lens = np.fromiter(map(len, ws), dtype=np.int64, count=len(ws))
        total = int(lens.sum()) or 1
        for n, limit in self.top_ngram_ratios.items():
            if len(ws) < n:
                continue
            _, first, counts = np.unique(_ngram_keys(ids, n), return_index=True, return_counts=True)
            top = int(counts.argmax())
            if counts[top] > 1 and int(lens[first[top]:first[top] + n].sum()) * int(counts[top]) / total > limit:
                return f"repetition_top_{n}gram"
        for n, limit in self.dup_ngram_ratios.items():
            if len(ws) < n:
                continue
            keys = _ngram_keys(ids, n)
            repeat = np.ones(len(keys), dtype=bool)
            repeat[np.unique(keys, return_index=True)[1]] = False  # every later occurrence of an n-gram
            starts = np.flatnonzero(repeat)
            edges = np.zeros(len(ws) + 1, dtype=np.int64)
            np.add.at(edges, starts, 1)
            np.add.at(edges, starts + n, -1)
            covered = np.cumsum(edges[:-1]) > 0  # words inside any repeated n-gram
            if int(lens[covered].sum()) / total > limit:
                return f"repetition_dup_{n}gram"
        return None


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit key per word n-gram (polynomial over word ids, wrapping; collisions are negligible)."""
    keys = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            keys = keys * np.uint64(0x100000001B3) + ids[k:len(ids) - n + 1 + k] + np.uint64(1)
    return keys


@dataclass
class SymbolRatio:
    max_digit_ratio: float = 0.3
    """Most digits among non-space characters."""
    max_symbol_ratio: float = 0.1
    """Most symbol characters (Unicode S*: math, currency, emoji …) among non-space characters."""
    max_upper_ratio: float = 0.5
    """Most upper-case letters among letters (shouting, tables of codes)."""

    def apply(self, rec: dict) -> str | None:
        counts = char_counts(rec["text"])
        if not counts.non_space:
            return "empty"
        if counts.digits / counts.non_space > self.max_digit_ratio:
            return "digit_ratio"
        if counts.symbols / counts.non_space > self.max_symbol_ratio:
            return "symbol_ratio"
        if counts.cased and counts.upper / counts.cased > self.max_upper_ratio:  # cased letters only (not CJK)
            return "upper_ratio"
        return None


@dataclass
class StopWords:
    min_count: int = 2
    """Fewest stop words (English words, or Chinese function characters such as 的 了 是)."""

    def apply(self, rec: dict) -> str | None:
        zh, en = STOP_WORDS["zh"], STOP_WORDS["en"]
        found = 0
        for w in words(rec["text"].lower()):
            if w in zh or strip_punct(w) in en:
                found += 1
                if found >= self.min_count:  # most prose gets there in its first sentence
                    return None
        return "no_stop_words"


@dataclass
class C4Lines:
    min_words_per_line: int = 3
    """Remove lines with fewer words (CJK characters count one each)."""
    require_terminal_punct: bool = True
    """Remove lines that do not end in terminal punctuation (. ! ? 。 ！ ？ and closing quotes)."""
    min_sentences: int = 3
    """Drop the record when fewer sentences remain."""
    bad_phrases: list[str] = field(default_factory=lambda: ["lorem ipsum", "{"])
    """Drop the record when it contains any of these (lower-cased)."""
    boilerplate_lines: list[str] = field(default_factory=lambda: [
        "javascript", "terms of use", "privacy policy", "cookie policy", "uses cookies", "版权所有", "免责声明"])
    """Remove lines containing any of these (lower-cased)."""

    def apply(self, rec: dict) -> str | None:
        low = rec["text"].lower()
        if any(p in low for p in self.bad_phrases):
            return "c4_bad_phrase"
        kept = []
        for line in rec["text"].split("\n"):
            stripped = line.strip()
            if not stripped:
                continue
            if self.require_terminal_punct and not stripped.endswith(TERMINAL_PUNCT):
                continue
            if len(words(stripped)) < self.min_words_per_line:
                continue
            if any(b in stripped.lower() for b in self.boilerplate_lines):
                continue
            kept.append(stripped)
        text = "\n".join(kept)
        if not text:
            return "c4_no_lines_left"
        if sentence_count(text) < self.min_sentences:
            return "c4_few_sentences"
        rec["text"] = text
        return None
