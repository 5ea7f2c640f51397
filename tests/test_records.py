"""The one reader of users' data files: every shape, and every bad file named with its line."""

from __future__ import annotations

import pytest

from engine.records import DataError, read_records


def test_shapes_read_with_their_lines(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"q": "一"}\n\n{"q": "二"}\n', encoding="utf-8")
    (tmp_path / "b.json").write_text('{"data": [{"q": 1}, {"q": 2}]}', encoding="utf-8")
    (tmp_path / "c.json").write_text('{"q": 1}\n{"q": 2}\n', encoding="utf-8")  # JSON Lines under .json
    (tmp_path / "d.csv").write_text("\ufeffq , a\n 问题 ,答案\n", encoding="utf-8")  # BOM, padded cells
    (tmp_path / "e.tsv").write_text("q\ta\nx\ty\n", encoding="utf-8")
    (tmp_path / "f.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    assert read_records(tmp_path / "a.jsonl") == [(1, {"q": "一"}), (3, {"q": "二"})]
    assert read_records(tmp_path / "b.json") == [(1, {"q": 1}), (2, {"q": 2})]
    assert read_records(tmp_path / "c.json") == [(1, {"q": 1}), (2, {"q": 2})]
    assert read_records(tmp_path / "d.csv") == [(2, {"q": "问题", "a": "答案"})]
    assert read_records(tmp_path / "e.tsv") == [(2, {"q": "x", "a": "y"})]
    assert read_records(tmp_path / "f.txt") == [(1, {"text": "one"}), (2, {"text": "two\n"})]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", b'{"q": 1}\n{"q": \n', r"bad.jsonl: line 2: not valid JSON"),
    ("list.jsonl", b'{"q": 1}\n[1, 2]\n', r"list.jsonl: line 2: expected a JSON object, got list"),
    ("gbk.jsonl", '{"q": "中文"}'.encode("gbk"), r"gbk.jsonl: not UTF-8 text"),
    ("wide.csv", b"q,a\nx,y,z\n", r"wide.csv: line 2: more cells than header columns"),
    ("num.json", b"[1]", r"num.json: record 1: expected a JSON object"),
    ("x.xlsx", b"", r"x.xlsx: unsupported file type '.xlsx'"),
])
def test_bad_files_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_records(tmp_path / name)


def test_a_caller_limits_the_types(tmp_path):
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"use \.csv, \.jsonl"):
        read_records(tmp_path / "t.parquet", (".csv", ".jsonl"))
