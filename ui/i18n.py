"""The one translation helper: t("English text") returns it in the UI language (English or 简体中文).

Strings are keyed by their English text, so a missing translation falls back to readable English. Each page
keeps its Chinese table in ui/locales/zh_<page>.py (a dict named ZH), merged here, so pages can be added
without touching a shared file. The language is a setting (Settings page), shared by the whole app.
"""

from __future__ import annotations

import importlib
import pkgutil

from ui import locales

LANGUAGES = {"en": "English", "zh": "简体中文"}
_current = "en"
_zh: dict[str, str] = {}


def _load_tables() -> None:
    for info in pkgutil.iter_modules(locales.__path__):
        if info.name.startswith("zh_"):
            _zh.update(importlib.import_module(f"ui.locales.{info.name}").ZH)


def set_language(lang: str) -> None:
    global _current
    if lang not in LANGUAGES:
        raise ValueError(f"language: must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    _current = lang


def language() -> str:
    return _current


def t(text: str, **kwargs) -> str:
    """Translate, then fill {placeholders} from kwargs."""
    if _current == "zh":
        if not _zh:
            _load_tables()
        text = _zh.get(text, text)
    return text.format(**kwargs) if kwargs else text
