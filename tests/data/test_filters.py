"""Every rule filter on crafted records it must keep and records it must drop, in English and in Chinese."""

from __future__ import annotations

import random

import pytest

from engine.data.filters import C4Lines, GopherQuality, GopherRepetition, Length, StopWords, SymbolRatio
from engine.data.normalize import Normalize, QualityScore
from tests.data.corpus import en_doc, zh_doc

EN = en_doc(random.Random(1))
ZH = zh_doc(random.Random(2))


def verdict(step, text: str) -> str | None:
    return step.apply({"text": text})


@pytest.mark.parametrize("text", [EN, ZH])
def test_clean_prose_passes_every_filter(text):
    for step in (Length(), GopherQuality(), GopherRepetition(), SymbolRatio(), StopWords(), C4Lines()):
        assert verdict(step, text) is None, type(step).__name__


def test_length_counts_characters_for_chinese():
    assert verdict(Length(min_chars=20), "短文本。") == "too_short"
    assert verdict(Length(min_chars=20), "这是一个足够长的中文句子，它有二十多个汉字，没有空格也行。") is None
    assert verdict(Length(min_chars=5), "hi   there   ") is None
    assert verdict(Length(min_chars=5, max_chars=10), "x" * 11) == "too_long"
    assert verdict(Length(min_chars=1, min_words=30), ZH[:29]) == "too_few_words"  # 29 characters = 29 words


def test_gopher_quality_rules():
    assert verdict(GopherQuality(), "Too short to be a document.") == "gopher_few_words"
    assert verdict(GopherQuality(), "太短了。") == "gopher_few_words"
    long_words = " ".join(["incomprehensibilities"] * 60)
    assert verdict(GopherQuality(), long_words) == "gopher_mean_word_length"
    hashes = EN + " #tag" * 40
    assert verdict(GopherQuality(), hashes) == "gopher_symbol_ratio"
    bullets = "\n".join(f"• the garden item number {i} of the shopping list" for i in range(60))
    assert verdict(GopherQuality(), bullets) == "gopher_bullet_lines"
    ellipsis = "\n".join(f"the story of the river goes on and on {i}..." for i in range(20))
    assert verdict(GopherQuality(), ellipsis) == "gopher_ellipsis_lines"
    numbers = " ".join(f"{i}.{i}" for i in range(100)) + " the and of"
    assert verdict(GopherQuality(), numbers) == "gopher_alpha_words"
    assert verdict(GopherQuality(), ZH) is None  # mean word length is not applied to Chinese


def test_repetition_rules_english_and_chinese():
    assert verdict(GopherRepetition(), "\n".join(["The same line again and again."] * 10)) == "repetition_paragraphs" \
        or verdict(GopherRepetition(), "\n".join(["The same line again and again."] * 10)) == "repetition_lines"
    lines_en = "\n".join(["Buy cheap watches today."] * 5 + EN.split("\n"))
    assert verdict(GopherRepetition(), lines_en).startswith("repetition_")
    spam_zh = "点击这里领取免费大奖" * 20
    assert verdict(GopherRepetition(), spam_zh).startswith("repetition_")
    assert verdict(GopherRepetition(), ZH) is None


def test_symbol_digit_and_upper_ratios():
    assert verdict(SymbolRatio(), "1234567890 " * 10 + "a few words") == "digit_ratio"
    assert verdict(SymbolRatio(), "★☆♥♦♣♠€$%^" * 5 + " 一些中文内容在这里") == "symbol_ratio"
    assert verdict(SymbolRatio(), "THIS IS ALL SHOUTING ABOUT SOMETHING IMPORTANT") == "upper_ratio"
    assert verdict(SymbolRatio(), ZH) is None  # CJK characters are neither digits, symbols nor cased


def test_stop_words_in_both_languages():
    assert verdict(StopWords(), "Lorem ipsum dolor sit amet consectetur") == "no_stop_words"
    assert verdict(StopWords(), "量子计算机芯片制造工艺") == "no_stop_words"
    assert verdict(StopWords(), "我们的老师是好人。") is None
    assert verdict(StopWords(), "The cat sat on the mat.") is None


def test_c4_line_rules_remove_lines_and_drop_bad_pages():
    page = "Home | About | Contact\nThis page uses cookies to improve your experience.\n" + EN
    rec = {"text": page}
    assert C4Lines().apply(rec) is None
    assert "Home | About" not in rec["text"] and "cookies" not in rec["text"]
    assert verdict(C4Lines(), EN + "\nfunction() { return 1; }") == "c4_bad_phrase"
    assert verdict(C4Lines(), "no punctuation here\nnor here") == "c4_no_lines_left"
    assert verdict(C4Lines(), "只有一句话而已。") == "c4_few_sentences"
    zh_rec = {"text": "菜单 首页\n" + ZH}
    assert C4Lines().apply(zh_rec) is None and "菜单" not in zh_rec["text"]


def test_normalize_folds_width_and_spaces():
    rec = {"text": "ＡＢＣ１２３\u3000全角\t\t空格\r\n\n\n\n下一段\u200b"}
    assert Normalize().apply(rec) is None
    assert rec["text"] == "ABC123 全角 空格\n\n下一段"
    assert Normalize().apply({"text": " \n\t "}) == "empty"


def test_quality_score_orders_prose_above_junk():
    good, junk = {"text": EN}, {"text": "click buy cheap free win prize now now now $$$ !!!"}
    assert QualityScore(min_score=0.5).apply(good) is None
    assert QualityScore(min_score=0.5).apply(junk) == "low_quality_score"
    assert good["quality"] > junk["quality"]
    assert QualityScore(min_score=0.5).apply({"text": ZH}) is None
