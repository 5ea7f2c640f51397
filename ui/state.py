"""Process-wide state of the web app: its data dir and current settings (one user, one workstation)."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings, data_dir, load_settings, save_settings
from ui import i18n

_root: Path | None = None
_settings: Settings | None = None


def init(root: Path | None = None) -> Path:
    global _root, _settings
    _root = data_dir(root)
    _settings = load_settings(_root)
    i18n.set_language(_settings.language)
    return _root


def root() -> Path:
    return _root if _root is not None else init()


def settings() -> Settings:
    if _settings is None:
        init()
    return _settings


def update_settings(new: Settings) -> None:
    global _settings
    save_settings(root(), new)
    _settings = new
    i18n.set_language(new.language)
