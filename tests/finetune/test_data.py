"""Data formats are detected from columns and bad input is reported with file, line and field."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.finetune.config import FinetuneConfig
from engine.finetune.data import DataError, load_examples
from tests.finetune.conftest import write_jsonl


def test_alpaca_sharegpt_messages_text_are_detected(tmp_path):
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "2 and 2", "output": "4"}])
    fmt, ex = load_examples(alpaca)
    assert fmt == "alpaca"
    assert ex[0].messages == [{"role": "user", "content": "Add\n\n2 and 2"}, {"role": "assistant", "content": "4"}]

    share = tmp_path / "s.json"
    share.write_text(json.dumps([{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                                                    {"from": "gpt", "value": "A"}]}]))
    fmt, ex = load_examples(share)
    assert fmt == "sharegpt" and [m["role"] for m in ex[0].messages] == ["system", "user", "assistant"]

    tool_turns = [{"role": "user", "content": "weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
                      "name": "get_weather", "arguments": "{}"}}]},
                  {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                  {"role": "assistant", "content": "Sunny."}]
    fmt, ex = load_examples(write_jsonl(tmp_path / "m.jsonl", [{"messages": tool_turns}]))
    assert fmt == "messages" and ex[0].messages[2]["role"] == "tool" and "tool_calls" in ex[0].messages[1]

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["one document", "another"]}), path)
    fmt, ex = load_examples(path, mapping={"text": "body"})
    assert fmt == "text" and ex[1].text == "another"

    csv_path = tmp_path / "c.csv"
    csv_path.write_text("question,answer\nWhy?,Because.\n")
    fmt, ex = load_examples(csv_path, mapping={"instruction": "question", "output": "answer"})
    assert fmt == "alpaca" and ex[0].messages[-1]["content"] == "Because."


def test_broken_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n')
    with pytest.raises(DataError, match=r"bad.jsonl: line 2: not valid JSON"):
        load_examples(path)


def test_wrong_field_names_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 3}])
    with pytest.raises(DataError, match=r"f.jsonl: line 2: field 'output' must be text"):
        load_examples(path)
    roles = write_jsonl(tmp_path / "r.jsonl", [{"messages": [{"role": "bot", "content": "x"}]}])
    with pytest.raises(DataError, match=r"r.jsonl: line 1: field messages\[0\].role is 'bot'"):
        load_examples(roles)


def test_unknown_columns_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"line 1: cannot tell the format from columns \['foo'\]"):
        load_examples(write_jsonl(tmp_path / "u.jsonl", [{"foo": 1}]))
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        load_examples(tmp_path / "e.jsonl")


def test_config_validate_reports_data_and_fields(tmp_path, chat_file, text_file):
    bad = write_jsonl(tmp_path / "x.jsonl", [{"messages": [{"role": "user", "content": "only a question"}]}])
    with pytest.raises(ValueError, match=r"^data: .*x.jsonl: line 1: field 'messages' has no assistant turn"):
        FinetuneConfig(data=str(bad)).validate()
    with pytest.raises(ValueError, match="^method: 'dora' is not one of"):
        FinetuneConfig(data=str(chat_file), method="dora").validate()
    with pytest.raises(ValueError, match="^objective: .* holds raw text"):
        FinetuneConfig(data=str(text_file), objective="sft").validate()
    with pytest.raises(ValueError, match="^deepspeed: ZeRO is for full"):
        FinetuneConfig(data=str(chat_file), deepspeed="zero2").validate()
    FinetuneConfig(data=str(chat_file)).validate()
