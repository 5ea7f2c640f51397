"""Incremental detokenization: multi-byte characters, spacing, and stop strings that straddle tokens."""

from __future__ import annotations

import pytest

from engine.infer.detokenizer import Detokenizer
from engine.models.loader import load_tokenizer

TEXTS = [
    "你好，世界！今天天气很好。",
    "Emoji 🎉🚀 and mixed 中文 text, ünïcödé too 👩‍👩‍👧.",
    " leading space, then\nnew lines\n\n and   runs of spaces",
]


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir):
    return load_tokenizer(bundled_model_dir)


def stream(tokenizer, prompt: str, text: str, stop: list[str]) -> tuple[list[str], bool]:
    detok = Detokenizer(tokenizer, tokenizer.encode(prompt), stop)
    deltas = []
    stopped = False
    for token in tokenizer.encode(text):
        stopped = detok.add_token(token)
        deltas.append(detok.take(finished=stopped))
        if stopped:
            break
    if not stopped:
        deltas.append(detok.take(finished=True))
    return deltas, stopped


@pytest.mark.parametrize("text", TEXTS)
def test_streamed_text_equals_a_full_decode_and_never_holds_a_replacement_char(tokenizer, text):
    ids = tokenizer.encode(text)
    assert any(tokenizer.decode([t]).endswith("\ufffd") for t in ids) or text.startswith(" ")
    deltas, stopped = stream(tokenizer, "User said:", text, [])
    assert not stopped
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in d for d in deltas)


def test_stop_string_across_tokens_is_cut_and_never_emitted(tokenizer):
    text = "The answer is 42. STOP here and ignore the rest"
    deltas, stopped = stream(tokenizer, "", text, ["STOP", "never"])
    assert stopped
    assert "".join(deltas) == "The answer is 42. "
    # Held back while it could still be the start of "STOP": no delta carries a prefix of it at its end.
    assert all("ST" not in d for d in deltas)


def test_chinese_stop_string(tokenizer):
    deltas, stopped = stream(tokenizer, "", "第一句。第二句。第三句。", ["第二"])
    assert stopped and "".join(deltas) == "第一句。"
