"""Readers on every format, and bad input — non-UTF-8, binary files, broken JSON lines, wrong columns, enormous
lines — skipped and counted with file and line instead of failing."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from engine.data.readers import Columns, list_inputs, plan_shards, preview, read_shard
from engine.data.stats import Stats


def read_all(paths, cols=Columns(), shard_bytes=1 << 30):
    stats = Stats()
    files = list_inputs([str(p) for p in paths], stats.bad)
    records = [r for s in plan_shards(files, shard_bytes) for r in read_shard(s, cols, stats.bad)]
    return records, stats


def test_each_format(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one", "id": 1}\n{"text": "two", "id": 2}\n')
    (tmp_path / "b.json").write_text(json.dumps([{"text": "three"}, {"text": "four"}]))
    (tmp_path / "c.csv").write_text("id,text\n1,\"five, with comma\"\n2,six\n")
    pq.write_table(pa.table({"text": ["seven", "eight"], "n": [7, 8]}), tmp_path / "d.parquet")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "e.md").write_text("# Nine\n\nA markdown file.")
    (tmp_path / "f.html").write_text("<html><head><title>t</title></head><body><nav>Menu Home About</nav>"
                                     "<article><p>" + "The main article text is here and it is long enough. " * 8 +
                                     "</p></article><footer>Copyright</footer></body></html>")
    records, stats = read_all([tmp_path])
    texts = [r["text"] for r in records]
    for want in ("one", "two", "three", "four", "five, with comma", "six", "seven", "eight"):
        assert want in texts
    assert any(t.startswith("# Nine") for t in texts)
    html = next(t for t in texts if "main article" in t)
    assert "Menu Home" not in html and "Copyright" not in html
    assert next(r for r in records if r["text"] == "one")["source"].endswith("a.jsonl:1")
    assert stats.bad_input == {}


def test_bad_input_is_counted_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    with open(bad, "wb") as f:
        f.write(b'{"text": "good one"}\n')
        f.write(b'{"text": "broken\n')
        f.write(b'{"text": "caf\xe9 latin-1"}\n')
        f.write(b'["not", "an", "object"]\n')
        f.write(b'{"body": "wrong field"}\n')
        f.write(b'{"text": "' + b"x" * 5000 + b'"}\n')
        f.write(b'{"text": "good two"}\n')
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "sheet.xlsx").write_bytes(b"PK")
    (tmp_path / "wrong.csv").write_text("title,body\na,b\n")
    records, stats = read_all([tmp_path], Columns(max_record_bytes=1000))
    assert [r["text"] for r in records] == ["good one", "good two"]
    assert stats.bad_input == {"broken_json": 1, "not_utf8": 1, "not_an_object": 1, "missing_text_field": 2,
                               "line_too_long": 1, "binary_file": 1, "unsupported_format": 1}
    assert stats.bad_examples["broken_json"] == [f"{bad}:2"]
    assert stats.bad_examples["not_utf8"] == [f"{bad}:3"]
    assert stats.bad_examples["line_too_long"] == [f"{bad}:6"]
    assert records[1]["source"] == f"{bad}:7"


def test_split_shards_read_every_line_once_with_right_numbers(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(1000)))
    records, _ = read_all([path], shard_bytes=997)  # shard edges fall mid-line
    assert [r["text"] for r in records] == [f"record {i}" for i in range(1000)]
    assert [r["source"].rsplit(":", 1)[1] for r in records] == [str(i + 1) for i in range(1000)]


def test_preview_shows_format_rows_and_problems(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"content": "a"}\n{"content": "b"}\nnot json\n')
    fmt, rows, notes = preview(path, Columns(text_field="content"))
    assert fmt == "jsonl" and [r["text"] for r in rows] == ["a", "b"]
    assert notes == ["p.jsonl:3: broken_json"]


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a text layer, written by hand (offsets computed) so the test needs no PDF writer."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_and_docx_documents(tmp_path):
    from docx import Document

    (tmp_path / "paper.pdf").write_bytes(_minimal_pdf("Ink stones grind ink for calligraphy."))
    doc = Document()
    doc.add_paragraph("砚台用来研墨。")
    doc.add_paragraph("A second paragraph.")
    doc.save(tmp_path / "notes.docx")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    (tmp_path / "empty.docx").write_bytes(b"PK\x03\x04 not a zip")
    records, stats = read_all([tmp_path])
    texts = sorted(r["text"] for r in records)
    assert texts == ["Ink stones grind ink for calligraphy.", "砚台用来研墨。\nA second paragraph."]
    assert set(stats.bad_input) == {"unreadable_pdf", "unreadable_docx"}
