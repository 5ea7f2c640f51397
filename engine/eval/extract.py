"""Read the answer out of generated text, and decide whether it matches the gold one.

Reasoning models write `<think>…</think>` first: it is removed before extraction and its length kept. Then one
extractor per answer kind: an option letter, a number (after `####` or "the answer is", else the last number,
as lm-eval's strict and flexible GSM8K filters), a LaTeX \\boxed{} answer, or a program (a fenced code block,
else the text itself). Text that holds no answer extracts to "" and is scored wrong, never an error.
"""

from __future__ import annotations

import re

THINK = re.compile(r"<think>(.*?)(</think>|$)", re.DOTALL)
NUMBER = re.compile(r"-?[$0-9.,]{2,}|-?[0-9]+")
FENCE = re.compile(r"```(?:[a-zA-Z0-9_+-]*)\n(.*?)(?:```|$)", re.DOTALL)


def strip_think(text: str) -> tuple[str, int]:
    """(text without its reasoning block, length of that block in characters); text without one is untouched
    (a completion's leading indentation is code)."""
    if "</think>" not in text and "<think>" not in text:
        return text, 0
    think_len = sum(len(m.group(1)) for m in THINK.finditer(text))
    if think_len == 0 and "<think>" not in text:  # a template that opened the block in the prompt
        head, _, tail = text.partition("</think>")
        return tail.strip(), len(head)
    return THINK.sub("", text).strip(), think_len


def extract_letter(text: str, n_options: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n_options]
    for pattern in (rf"answer is\s*\(?([{letters}])\b", rf"^\s*\(?([{letters}])[).:\s]", rf"\b([{letters}])\b"):
        m = re.search(pattern, text.strip() + " ", re.MULTILINE)
        if m:
            return m.group(1)
    return ""


def _clean_number(raw: str) -> str:
    value = raw.replace(",", "").replace("$", "").rstrip(".")
    try:
        number = float(value)
    except ValueError:
        return ""
    return str(int(number)) if number.is_integer() else str(number)


def extract_number(text: str) -> str:
    m = re.search(r"####\s*(-?[$0-9.,]+)", text) or re.search(r"[Tt]he answer is\s*\$?(-?[0-9.,]+)", text)
    if m and _clean_number(m.group(1)):
        return _clean_number(m.group(1))
    for raw in reversed(NUMBER.findall(text)):
        if _clean_number(raw):
            return _clean_number(raw)
    return ""


def last_boxed(text: str) -> str:
    start = text.rfind("\\boxed")
    if start < 0:
        m = re.search(r"final answer is\s*\$?(.+?)\$?(?:\.\s*I hope|\.?\s*$)", text, re.MULTILINE)
        return m.group(1).strip() if m else ""
    i = text.find("{", start)
    if i < 0:
        return ""
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return ""


def normalize_math(answer: str) -> str:
    """Minerva-style normalisation for string comparison of final answers."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("dfrac", "frac"),
                     ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", ""), (" ", "")):
        s = s.replace(old, new)
    s = s.rstrip(".")
    if re.fullmatch(r"-?[0-9,]+(\.0+)?", s):
        s = s.replace(",", "").split(".")[0]
    return s


def extract_code(text: str) -> str:
    blocks = FENCE.findall(text)
    if blocks:
        return max(blocks, key=len).rstrip()
    return text.split("[DONE]")[0].rstrip()


def extract(kind: str, text: str, n_options: int = 4) -> str:
    if kind == "letter":
        return extract_letter(text, n_options)
    if kind == "number":
        return extract_number(text)
    if kind == "boxed":
        return last_boxed(text)
    if kind == "code":
        return extract_code(text)
    return text.strip()


def is_correct(kind: str, extracted: str, gold: str) -> bool:
    if not extracted:
        return False
    if kind == "number":
        return extracted == _clean_number(gold)
    if kind == "boxed":
        return normalize_math(extracted) == normalize_math(gold)
    return extracted.strip().casefold() == gold.strip().casefold()
