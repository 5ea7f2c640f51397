"""Contamination check: which benchmark items share a word n-gram (13 by default) with a training dataset.

Text on both sides is normalized the way lm-evaluation-harness's decontamination janitor and the GPT-3 paper do
it: lowercased, punctuation deleted, split on whitespace. For ASCII text this is exactly the janitor's
`normalize_string` + `word_ngrams`. Two additions so other languages work: every character that is neither a
letter, a digit nor whitespace is deleted (Unicode punctuation such as “”，。 too), and each CJK character is a
token of its own (Chinese and Japanese put no spaces between words).

The lookup is built from the benchmark side, as lm-eval's `get_train_overlap` does: a benchmark has thousands of
items, a training set can have billions of tokens. So memory is bounded by the benchmark (one 64-bit hash per
item n-gram) and the dataset is streamed record by record (jsonl, json, csv, parquet in row batches, text in
line blocks), never held whole. The scan stops early once every item is found.

An item shorter than n tokens cannot contain an n-gram; like GPT-3's dynamic n (never below 8), such an item is
checked as a whole when it has at least `min_tokens` tokens, and counted as too short to judge otherwise.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.progress import Progress, check_cancel, no_progress

DEFAULT_N = 13
MIN_TOKENS = 8
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv", ".txt", ".md")
SKIP_FILES = {"manifest.json", "recipe.json"}  # a prepared dataset's own bookkeeping, not training text
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_NOT_WORD = re.compile(r"[^\w\s]|_")
TEXT_BLOCK_LINES = 2000  # lines of a .txt file scanned at a time


# ASCII text (most training data) takes a fast path with the same result: lowercase, and delete every character
# that is neither alphanumeric nor whitespace — for ASCII that is exactly string.punctuation plus control codes.
_ASCII_TABLE = str.maketrans({chr(c): (chr(c).lower() if chr(c).isalnum() or chr(c).isspace() else None)
                              for c in range(128)})


def normalize(text: str) -> str:
    if text.isascii():
        return text.translate(_ASCII_TABLE)
    return _NOT_WORD.sub("", text.lower())


def tokens(text: str) -> list[str]:
    if text.isascii():
        return text.translate(_ASCII_TABLE).split()
    return _TOKEN.findall(normalize(text))


def item_text(doc: dict) -> str:
    """What of a benchmark item is checked: question, options and answer (not a prompt with few-shot examples)."""
    parts = [doc[k] for k in ("question", "answer", "solution") if isinstance(doc.get(k), str)]
    parts += [c for c in doc.get("choices", []) if isinstance(c, str)]
    if parts:
        return "\n".join(parts)
    return "\n".join(_strings({k: v for k, v in doc.items() if k != "id"}))  # another shape: all its text


@dataclass
class Report:
    contaminated: dict[str, str] = field(default_factory=dict)
    """Item key -> the first overlapping n-gram found (normalized text)."""
    too_short: set[str] = field(default_factory=set)
    """Items with fewer than min_tokens tokens: never marked."""
    records: int = 0
    """Dataset records (or text blocks) scanned."""
    tokens: int = 0
    """Dataset tokens scanned."""


class OverlapIndex:
    """Hashed n-grams of benchmark items; scan() marks the items whose n-grams occur in a dataset text."""

    def __init__(self, items: dict[str, str], n: int = DEFAULT_N, min_tokens: int = MIN_TOKENS):
        if n < 1:
            raise ValueError(f"n: must be >= 1, got {n}")
        self.n, self.report = n, Report()
        self.by_length: dict[int, dict[int, list[str]]] = {}
        self.pending: set[str] = set()
        self._tail: list[str] = []
        for key, text in items.items():
            toks = tokens(text)
            if len(toks) >= n:
                grams = {hash(tuple(toks[i:i + n])) for i in range(len(toks) - n + 1)}
            elif len(toks) >= min(min_tokens, n):
                grams = {hash(tuple(toks))}
            else:
                self.report.too_short.add(key)
                continue
            table = self.by_length.setdefault(min(len(toks), n), {})
            for h in grams:
                table.setdefault(h, []).append(key)
            self.pending.add(key)

    @property
    def done(self) -> bool:
        return not self.pending

    def scan(self, text: str, continues: bool = False) -> None:
        """Look up every n-gram of text; continues=True joins it to the previous text (blocks of one file)."""
        toks = tokens(text)
        self.report.records += 1
        self.report.tokens += len(toks)
        if continues:
            toks = self._tail + toks
        longest = max(self.by_length, default=0)
        self._tail = toks[-(longest - 1):] if longest > 1 else []
        for length, table in self.by_length.items():
            for i in range(len(toks) - length + 1):
                keys = table.get(hash(tuple(toks[i:i + length])))
                if keys:
                    self._mark(keys, " ".join(toks[i:i + length]))

    def _mark(self, keys: list[str], gram: str) -> None:
        for key in keys:
            if key in self.pending:
                self.pending.discard(key)
                self.report.contaminated[key] = gram


def find_contaminated(items: dict[str, str], data: str | Path, n: int = DEFAULT_N, min_tokens: int = MIN_TOKENS,
                      progress: Progress = no_progress, cancel: threading.Event | None = None) -> Report:
    """Items (key -> text) that share an n-gram with the dataset at `data` (a file or a folder of files)."""
    index = OverlapIndex(items, n, min_tokens)
    files = data_files(Path(data))
    total = sum(f.stat().st_size for f in files) or 1
    done_bytes = 0
    for path in files:
        for text, continues, offset in iter_texts(path):
            if index.done:
                break
            index.scan(text, continues)
            if index.report.records % 256 == 0:
                check_cancel(cancel)
                progress(fraction=min(1.0, (done_bytes + offset) / total),
                         message=f"contamination: {path.name}, {index.report.tokens:,} tokens scanned, "
                                 f"{len(index.report.contaminated)} items overlap")
        done_bytes += path.stat().st_size
        if index.done:
            break
    progress(fraction=1.0, message=f"contamination: {len(index.report.contaminated)} of {len(items)} items overlap")
    return index.report


def data_files(path: Path) -> list[Path]:
    """The training text files of a dataset: the file itself, or every data file in its folder."""
    if path.is_file():
        if path.suffix.lower() not in DATA_SUFFIXES:
            raise ValueError(f"{path}: not a data file (expected {', '.join(DATA_SUFFIXES)})")
        return [path]
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or folder")
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                   and p.name not in SKIP_FILES and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not found:
        raise ValueError(f"{path}: no data files in it ({', '.join(DATA_SUFFIXES)})")
    return found


def iter_texts(path: Path) -> Iterator[tuple[str, bool, int]]:
    """(text, continues the previous one, byte offset reached) for each record of a data file, streamed."""
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        yield from _text_blocks(path)
    elif suffix == ".parquet":
        yield from _parquet(path)
    elif suffix in (".csv", ".tsv"):
        yield from _csv(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".json" and _starts_with_bracket(path):
        yield from ((text, False, 0) for text in _json_list(path))
    else:
        yield from _jsonl(path)


def _strings(value) -> Iterator[str]:
    """Every string inside a record; a string holding JSON (a parquet `messages` column) is opened up."""
    if isinstance(value, str):
        if value[:2] in ('[{', '{"'):
            try:
                yield from _strings(json.loads(value))
                return
            except ValueError:
                pass
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _jsonl(path: Path) -> Iterator[tuple[str, bool, int]]:
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}: line {line_no}: not valid JSON ({e})") from None
            yield "\n".join(_strings(record)), False, f.tell()


def _starts_with_bracket(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(b"[")


def _json_list(path: Path) -> Iterator[str]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    for record in records:
        yield "\n".join(_strings(record))


def _csv(path: Path, delimiter: str) -> Iterator[tuple[str, bool, int]]:
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter=delimiter):
            yield "\n".join(row), False, 0


def _parquet(path: Path) -> Iterator[tuple[str, bool, int]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    size, rows_done, rows_total = path.stat().st_size, 0, max(1, parquet.metadata.num_rows)
    for batch in parquet.iter_batches(batch_size=1024):
        rows_done += batch.num_rows
        for record in batch.to_pylist():
            yield "\n".join(_strings(record)), False, size * rows_done // rows_total


def _text_blocks(path: Path) -> Iterator[tuple[str, bool, int]]:
    """A text file in blocks of lines; each block continues the previous, so n-grams span the joins."""
    with open(path, "rb") as f:
        block: list[str] = []
        first = True
        for line in f:
            block.append(line.decode("utf-8", errors="replace"))
            if len(block) >= TEXT_BLOCK_LINES:
                yield "".join(block), not first, f.tell()
                block, first = [], False
        if block:
            yield "".join(block), not first, f.tell()
