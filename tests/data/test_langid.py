"""Language identification on Chinese, English and mixed samples, and the keep/drop decisions."""

from __future__ import annotations

from engine.data.langid import LanguageId, detect


def test_detects_chinese_and_english():
    assert detect("今天天气很好，我们一起去公园散步，然后在湖边吃了午饭。")[0] == "zh"
    assert detect("The weather was fine today, so we walked in the park and had lunch by the lake.")[0] == "en"


def test_mixed_records_are_marked_and_kept():
    rec = {"text": "我们在用 Python 写一个 data pipeline，用来 clean 和 deduplicate 语料。"}
    assert LanguageId().apply(rec) is None
    assert rec["lang"] in ("zh", "en") and rec["mixed"] is True
    pure = {"text": "这是一段完全由中文组成的文字，没有任何英文单词。"}
    LanguageId().apply(pure)
    assert pure["mixed"] is False and pure["lang"] == "zh"


def test_unwanted_language_is_dropped():
    rec = {"text": "Der schnelle braune Fuchs springt über den faulen Hund, und die Katze schläft im Garten."}
    assert LanguageId(languages=["zh", "en"]).apply(rec) == "language_not_wanted"
    assert rec["lang"] == "de"
    assert LanguageId(languages=[]).apply(dict(rec)) is None  # empty list: label only
