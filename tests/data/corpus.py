"""Seeded prose generators for the data tests: English and Chinese documents that read like ordinary text
(stop words, punctuation, varied sentences), so the rule filters keep them, plus helpers to plant duplicates."""

from __future__ import annotations

import random

EN_ADJ = [
    "old", "young", "quiet", "small", "bright", "green", "cold", "warm", "busy", "distant", "gentle", "narrow",
    "wooden", "famous", "hidden", "simple", "ancient", "modern", "careful", "curious"
]
EN_NOUN = [
    "river", "teacher", "village", "council", "neighbour", "garden", "library", "road", "farmer", "bridge",
    "market", "letter", "boat", "school", "festival", "harvest", "forest", "island", "painter", "doctor",
    "kitchen", "museum", "station", "window"
]
EN_VERB = [
    "visited", "painted", "described", "studied", "repaired", "watched", "followed", "remembered", "discovered",
    "admired"
]
EN_PREP = ["near", "behind", "across", "beside", "under", "above", "through", "beyond"]
EN_ADV = ["slowly", "quietly", "often", "carefully", "again", "yesterday", "together", "finally"]
ZH_SUBJ = [
    "老师", "学生", "农民", "医生", "画家", "邻居", "校长", "司机", "厨师",
    "记者", "工人", "作家", "孩子", "老人", "商人", "游客", "警察", "护士"
]
ZH_VERB = ["参观了", "讨论了", "观察了", "修理了", "介绍了", "研究了", "整理了", "描写了", "拍摄了", "打扫了"]
ZH_OBJ = [
    "博物馆", "花园", "历史", "石桥", "集市", "来信", "森林", "地图", "收成",
    "灯光", "小说", "学校", "车站", "厨房", "河流", "山路", "码头", "公园",
    "图书馆", "广场"
]
ZH_ADV = ["昨天", "今天", "早上", "晚上", "周末", "上个月", "去年", "春天", "秋天", "下午"]
ZH_PLACE = ["城东", "城西", "村口", "山下", "河边", "海边", "湖边", "街角"]


def en_doc(rng: random.Random, sentences: int = 10) -> str:
    out = []
    for _ in range(sentences):
        out.append(
            f"The {rng.choice(EN_ADJ)} {rng.choice(EN_NOUN)} {rng.choice(EN_VERB)} the "
            f"{rng.choice(EN_ADJ)} {rng.choice(EN_NOUN)} {rng.choice(EN_PREP)} a {rng.choice(EN_NOUN)} "
            f"{rng.choice(EN_ADV)} and it was {rng.randint(2, 999)} days old."
        )
    return "\n".join(" ".join(out[i : i + 3]) for i in range(0, len(out), 3))


def zh_doc(rng: random.Random, sentences: int = 10) -> str:
    out = []
    for _ in range(sentences):
        out.append(
            f"{rng.choice(ZH_ADV)}{rng.choice(ZH_SUBJ)}在{rng.choice(ZH_PLACE)}{rng.choice(ZH_VERB)}"
            f"{rng.choice(ZH_OBJ)}，{rng.choice(ZH_SUBJ)}{rng.choice(ZH_VERB)}{rng.randint(2, 999)}个"
            f"{rng.choice(ZH_OBJ)}。"
        )
    return "\n".join("".join(out[i : i + 3]) for i in range(0, len(out), 3))


def near_copy(rng: random.Random, text: str, edits: int = 3) -> str:
    """Text with a few words (or characters, for Chinese) replaced: a near duplicate."""
    if " " in text:
        words = text.split(" ")
        for _ in range(edits):
            words[rng.randrange(len(words))] = rng.choice(["blue", "quick", "many", "other"])
        return " ".join(words)
    chars = list(text)
    for _ in range(edits):
        chars[rng.randrange(len(chars))] = rng.choice("红快多别")
    return "".join(chars)
