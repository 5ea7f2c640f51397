"""The Settings page: valid changes reach settings.json, bad ones are refused at their field, language switches."""

from __future__ import annotations

import json

import pytest
from nicegui.testing import User

from app.db import get_engine
from app.settings import SETTINGS_FILE, load_settings
from ui import i18n


@pytest.fixture
def english():
    """The language is process-wide state: put it back whatever the test did."""
    yield
    i18n.set_language("en")


def saved(home) -> dict:
    return json.loads((home / SETTINGS_FILE).read_text(encoding="utf-8"))


async def test_saves_a_valid_change(home, user: User):
    await user.open("/settings")
    await user.should_see(f"Data dir: {home}")
    user.find(marker="port").clear().type("9001")
    user.find(marker="telemetry_retention_h").clear().type("48")
    user.find(marker="save").click()
    await user.should_see("Settings saved.")
    await user.should_see("apply at the next launch")
    assert saved(home)["port"] == 9001 and saved(home)["telemetry_retention_h"] == 48
    assert load_settings(home).port == 9001
    assert not list(home.glob(".settings-*"))  # the atomic write left no temp file behind


async def test_refuses_a_public_host_without_a_token(home, user: User):
    await user.open("/settings")
    user.find(marker="host").clear().type("0.0.0.0")
    await user.should_see("Set an access token first")  # at the field, as soon as it is typed
    user.find(marker="save").click()
    await user.should_see("Fix the marked fields first.")
    assert not (home / SETTINGS_FILE).exists()

    user.find(marker="access_token").type("short")
    await user.should_see("At least 8 characters")
    user.find(marker="access_token").type("-but-long-enough")
    await user.should_not_see("Set an access token first")  # the token clears the host's error
    user.find(marker="save").click()
    await user.should_see("Settings saved.")
    assert saved(home)["host"] == "0.0.0.0" and saved(home)["access_token"] == "short-but-long-enough"


async def test_refuses_a_port_out_of_range(home, user: User):
    await user.open("/settings")
    user.find(marker="port").clear().type("70000")
    await user.should_see("Must be between 1 and 65535")
    user.find(marker="gpu_jobs_per_gpu").clear().type("1.5")
    await user.should_see("Enter a whole number")
    user.find(marker="save").click()
    await user.should_see("Fix the marked fields first.")
    assert not (home / SETTINGS_FILE).exists()


async def test_switching_to_chinese(home, user: User, english):
    await user.open("/settings")
    user.find(marker="language").click()
    user.find("简体中文").click()
    user.find(marker="save").click()
    # The language is switched as it is saved: what follows the save is already in Chinese.
    await user.should_see("重新加载页面以应用新的语言和主题")
    assert saved(home)["language"] == "zh"
    get_engine(home)  # in the app, the sampler has opened the database before any page does
    await user.open("/telemetry")
    await user.should_see("监控")
    await user.should_see("10 分钟")
    await user.open("/settings")
    await user.should_see("界面语言")
    await user.should_see("保存")
