"""Readers: turn input files into a stream of records `{"text": …, "source": "file:line", …other fields}`.

Formats: jsonl, json (a list of objects), csv/tsv, parquet, txt/md (one record per file), html (main text by
trafilatura), pdf (text layer by pypdf) and docx (paragraphs by python-docx), one record per document.
Large jsonl files are split into byte-range shards so several processes read one file. Nothing is read whole
except a .json list and a single document (both capped by `max_record_bytes`). Bad input never raises: the
record (or the whole file) is skipped and reported to `bad(reason, file, line)`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".txt": "text", ".md": "text", ".html": "html", ".htm": "html",
           ".pdf": "pdf", ".docx": "docx"}
SPLITTABLE = {"jsonl"}
BINARY_FORMATS = {"parquet", "pdf", "docx"}  # exempt from the NUL-byte check for text files
Bad = Callable[[str, str, int], None]


@dataclass
class Columns:
    text_field: str = "text"
    """Field holding the text (jsonl, json, csv, parquet)."""
    prompt_field: str = ""
    """Field holding a prompt, kept as `prompt` for the SFT messages format."""
    max_record_bytes: int = 8_000_000
    """Longest line or document read; longer ones are skipped and counted."""


@dataclass
class Shard:
    index: int
    path: str
    fmt: str
    start: int = 0  # byte range [start, end) of a split jsonl file; end -1 = to the end
    end: int = -1


def detect_format(path: Path) -> str | None:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt == "json":  # many ".json" files are really JSON lines
        with open(path, "rb") as f:
            head = f.read(4096).lstrip()
        fmt = "json" if head.startswith(b"[") else "jsonl"
    return fmt


def is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(8192)


def list_inputs(paths: list[str], bad: Bad) -> list[tuple[Path, str]]:
    """Every readable file under paths (folders walked in sorted order) with its format."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in files:
            if not p.exists():
                bad("missing_file", str(p), 0)
            elif (fmt := detect_format(p)) is None:
                bad("unsupported_format", str(p), 0)
            elif fmt not in BINARY_FORMATS and is_binary(p):
                bad("binary_file", str(p), 0)
            else:
                found.append((p, fmt))
    return found


def plan_shards(files: list[tuple[Path, str]], shard_bytes: int) -> list[Shard]:
    shards: list[Shard] = []
    for path, fmt in files:
        size = path.stat().st_size
        if fmt in SPLITTABLE and size > shard_bytes:
            for start in range(0, size, shard_bytes):
                shards.append(Shard(len(shards), str(path), fmt, start, min(start + shard_bytes, size)))
        else:
            shards.append(Shard(len(shards), str(path), fmt))
    return shards


def _record(obj, cols: Columns, source: str, line: int, bad: Bad) -> dict | None:
    if not isinstance(obj, dict):
        bad("not_an_object", source, line)
        return None
    text = obj.get(cols.text_field)
    if not isinstance(text, str):
        bad("missing_text_field", source, line)
        return None
    rec = {k: v for k, v in obj.items() if k != cols.text_field and isinstance(v, (str, int, float, bool))}
    rec["text"] = text
    if cols.prompt_field:
        rec["prompt"] = obj.get(cols.prompt_field)
    rec["source"] = f"{source}:{line}"
    return rec


def _read_jsonl(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    with open(shard.path, "rb") as f:
        line_no = 0
        if shard.start > 0:  # the line that starts at or after `start` is ours; count the newlines before it
            f.seek(shard.start - 1)
            f.readline()
            first = f.tell()
            f.seek(0)
            remaining = first
            while remaining:
                chunk = f.read(min(remaining, 1 << 24))
                line_no += chunk.count(b"\n")
                remaining -= len(chunk)
        end = shard.end if shard.end >= 0 else os.path.getsize(shard.path)
        while f.tell() < end:
            raw = f.readline(cols.max_record_bytes + 1)
            line_no += 1
            if len(raw) > cols.max_record_bytes and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of an enormous line without holding it
                    raw = f.readline(1 << 20)
                bad("line_too_long", shard.path, line_no)
                continue
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad("not_utf8", shard.path, line_no)
                continue
            except ValueError:
                bad("broken_json", shard.path, line_no)
                continue
            if (rec := _record(obj, cols, shard.path, line_no, bad)) is not None:
                yield rec


def _read_json(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    if os.path.getsize(shard.path) > 64 * cols.max_record_bytes:
        bad("json_file_too_large_use_jsonl", shard.path, 0)
        return
    try:
        with open(shard.path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError:
        bad("not_utf8", shard.path, 0)
        return
    except ValueError as e:
        bad("broken_json", shard.path, getattr(e, "lineno", 0))
        return
    if not isinstance(data, list):
        bad("json_not_a_list", shard.path, 1)
        return
    for i, obj in enumerate(data, start=1):
        if (rec := _record(obj, cols, shard.path, i, bad)) is not None:
            yield rec


def _read_csv(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    csv.field_size_limit(cols.max_record_bytes)
    with open(shard.path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if shard.fmt == "tsv" else ",")
        if cols.text_field not in (reader.fieldnames or []):
            bad("missing_text_field", shard.path, 1)
            return
        try:
            for row in reader:
                if any("\udc80" <= c <= "\udcff" for v in row.values() if isinstance(v, str) for c in v):
                    bad("not_utf8", shard.path, reader.line_num)
                    continue
                if (rec := _record(row, cols, shard.path, reader.line_num, bad)) is not None:
                    yield rec
        except csv.Error:  # the csv module cannot resume after a malformed row: the rest of the file goes
            bad("broken_csv", shard.path, reader.line_num)


def _read_parquet(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(shard.path)
    except Exception:  # pyarrow raises several types for a file that is not parquet
        bad("broken_parquet", shard.path, 0)
        return
    if cols.text_field not in pf.schema_arrow.names:
        bad("missing_text_field", shard.path, 0)
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            if (rec := _record(obj, cols, shard.path, row, bad)) is not None:
                yield rec


def _read_document(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    if os.path.getsize(shard.path) > cols.max_record_bytes:
        bad("file_too_large", shard.path, 0)
        return
    try:
        with open(shard.path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        bad("not_utf8", shard.path, 0)
        return
    if shard.fmt == "html":
        import trafilatura

        text = trafilatura.extract(text, include_comments=False, include_tables=False) or ""
        if not text.strip():
            bad("no_main_text", shard.path, 0)
            return
    yield {"text": text, "source": f"{shard.path}:1"}


def _office_text(path: str, fmt: str) -> str:
    if fmt == "pdf":
        from pypdf import PdfReader

        return "\n\n".join((page.extract_text() or "").strip() for page in PdfReader(path).pages).strip()
    from docx import Document

    return "\n".join(p.text for p in Document(path).paragraphs).strip()


def _read_office(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    if os.path.getsize(shard.path) > cols.max_record_bytes * 8:  # compressed containers: allow more bytes
        bad("file_too_large", shard.path, 0)
        return
    try:
        text = _office_text(shard.path, shard.fmt)
    except Exception:  # pypdf and python-docx raise many kinds of errors on damaged files
        bad(f"unreadable_{shard.fmt}", shard.path, 0)
        return
    if not text:
        bad("no_text_layer" if shard.fmt == "pdf" else "empty_document", shard.path, 0)
        return
    yield {"text": text, "source": f"{shard.path}:1"}


READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_csv,
           "parquet": _read_parquet, "text": _read_document, "html": _read_document,
           "pdf": _read_office, "docx": _read_office}


def read_shard(shard: Shard, cols: Columns, bad: Bad) -> Iterator[dict]:
    return READERS[shard.fmt](shard, cols, bad)


def preview(path: Path, cols: Columns, limit: int = 5) -> tuple[str | None, list[dict], list[str]]:
    """(format, first records, bad-input notes) of one file, for the upload dialog."""
    notes: list[str] = []
    fmt = detect_format(path)
    if fmt is None:
        return None, [], [f"{path.name}: unsupported format"]
    rows: list[dict] = []
    for rec in read_shard(Shard(0, str(path), fmt), cols, lambda r, f, n: notes.append(f"{Path(f).name}:{n}: {r}")):
        rows.append(rec)
        if len(rows) >= limit:
            break
    return fmt, rows, notes[:limit]


def raw_fields(path: Path) -> list[str]:
    """The field names of a structured file's first record (for the column picker); [] for text and html."""
    fmt = detect_format(path)
    try:
        if fmt == "jsonl":
            with open(path, "rb") as f:
                first = next((line for line in f if line.strip()), b"{}")
            obj = json.loads(first.decode("utf-8", errors="replace"))
            return list(obj) if isinstance(obj, dict) else []
        if fmt in ("csv", "tsv"):
            with open(path, encoding="utf-8", errors="replace", newline="") as f:
                return next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), [])
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        if fmt == "json" and os.path.getsize(path) <= 64 << 20:
            with open(path, encoding="utf-8", errors="replace") as f:
                data = json.load(f)
            return list(data[0]) if data and isinstance(data[0], dict) else []
    except (ValueError, OSError, StopIteration):
        return []
    return []
