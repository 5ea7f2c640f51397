"""Rows of a user's data file, each with the line it came from: the one reader behind finetuning and evaluation.

Users bring the same shapes to every stage (JSONL, a JSON list, CSV/TSV with a header, Parquet, plain text), and
a bad row must be reported the same way everywhere: file, line, and what is wrong. Reading is strict UTF-8
(a byte-order mark is fine), so Chinese text arrives intact and a file in another encoding is named, not
garbled.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".md")


class DataError(ValueError):
    """A problem in the user's file; the message names the file, the line and the field."""


def read_records(path: str | Path, suffixes: tuple[str, ...] = SUFFIXES) -> list[tuple[int, dict]]:
    """(line number, record) for every row; `suffixes` limits the file types a caller accepts."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(suffixes)})")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(i + 1, r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    if suffix in (".csv", ".tsv"):
        return _csv(path, text, "\t" if suffix == ".tsv" else ",")
    if suffix in (".txt", ".md"):  # raw text: one document per blank-line-separated block
        return [(i + 1, {"text": b}) for i, b in enumerate(text.split("\n\n")) if b.strip()]
    if suffix == ".json":
        whole = _json_document(path, text)
        if whole is not None:
            return whole
    return _jsonl(path, text)  # .jsonl, and a .json file that holds one object per line


def _csv(path: Path, text: str, delimiter: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not reader.fieldnames:
        raise DataError(f"{path}: line 1: the file has no header row")
    rows = []
    for row in reader:
        if None in row:
            raise DataError(f"{path}: line {reader.line_num}: more cells than header columns")
        rows.append((reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items()}))
    return rows


def _json_document(path: Path, text: str) -> list[tuple[int, dict]] | None:
    """A JSON list of objects (or {"data": [...]}); None when the file is JSON Lines instead."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several documents: JSON Lines under a .json name
            return None
        raise DataError(f"{path}: line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} wrappers
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects")
    for i, r in enumerate(data, 1):
        if not isinstance(r, dict):
            raise DataError(f"{path}: record {i}: expected a JSON object, got {type(r).__name__}")
    return [(i, r) for i, r in enumerate(data, 1)]


def _jsonl(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object, got {type(record).__name__}")
        rows.append((n, record))
    return rows
