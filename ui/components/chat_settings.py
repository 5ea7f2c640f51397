"""The Chat page's settings panel: system prompt, sampling parameters and structured output of the session.

Every change is handed to the page at once (text fields after a short pause in typing), which saves it into
the session, so a resumed chat continues with the settings it had. Structured output asks the server for
grammar-constrained JSON (any object, or one JSON Schema typed here); a schema that does not parse or is not
valid JSON Schema is shown as an error at the field and is not saved.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from nicegui import ui

from app.chat_client import DEFAULT_PARAMS, clean_params, schema_response_format
from ui.i18n import t

# (key, label, min, max, step, tooltip)
NUMBERS = [
    ("temperature", "Temperature", 0.0, 2.0, 0.05, "0 is greedy: the most likely token every time"),
    ("top_p", "Top-p", 0.0, 1.0, 0.05, "Sample only from the most likely tokens that add up to this probability"),
    ("top_k", "Top-k", 0, 1000, 1, "Sample only from the k most likely tokens (0: off)"),
    ("min_p", "Min-p", 0.0, 1.0, 0.01, "Drop tokens less likely than this fraction of the most likely one"),
    ("max_tokens", "Max tokens", 1, 131072, 64, "Longest answer, in tokens"),
    ("repetition_penalty", "Repetition penalty", 0.01, 2.0, 0.05, "Above 1 discourages tokens already present"),
    ("frequency_penalty", "Frequency penalty", -2.0, 2.0, 0.1, "Penalize tokens by how often they appeared"),
    ("presence_penalty", "Presence penalty", -2.0, 2.0, 0.1, "Penalize tokens that appeared at all"),
    ("seed", "Seed", 0, 2**31 - 1, 1, "Same seed, same settings, same answer (empty: random)"),
]
DEBOUNCE = "debounce=400"
STRUCTURED = {"off": "Off (free text)", "json_object": "Any JSON object", "json_schema": "JSON matching a schema"}
EXAMPLE_SCHEMA = json.dumps({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
                            indent=2)


class SettingsPanel:
    def __init__(self, on_change: Callable[[], Awaitable[None]]):
        self.on_change = on_change
        self.system_prompt = ""
        self.params = dict(DEFAULT_PARAMS)
        with ui.expansion(t("Settings"), icon="tune").classes("w-full border rounded").mark("chat-settings"):
            self.system = ui.textarea(t("System prompt"), on_change=self._changed).props(
                f"autogrow outlined {DEBOUNCE}").classes("w-full").mark("system-prompt")
            self.numbers: dict[str, ui.number] = {}
            with ui.grid().classes("w-full gap-2 grid-cols-2 md:grid-cols-5"):
                for key, label, low, high, step, tip in NUMBERS:
                    number = ui.number(t(label), min=low, max=high, step=step, on_change=self._changed)
                    number.props(f"dense outlined {DEBOUNCE}" + (" clearable" if key == "seed" else ""))
                    number.mark(f"param-{key}")
                    with number:
                        ui.tooltip(t(tip))
                    self.numbers[key] = number
            with ui.row().classes("w-full items-center gap-2"):
                self.stop = ui.input_chips(t("Stop strings"), new_value_mode="add-unique", on_change=self._changed)
                self.stop.props("dense outlined").classes("flex-1").mark("param-stop")
                ui.button(t("Reset to defaults"), icon="restart_alt", on_click=self.reset).props("flat")
            self.structured = ui.select({k: t(v) for k, v in STRUCTURED.items()}, value="off",
                                        label=t("Structured output"), on_change=self._changed)
            self.structured.props("dense outlined").classes("w-72").mark("structured-output")
            with self.structured:
                ui.tooltip(t("The server constrains decoding, so the answer always parses, even from a small model"))
            self.schema = ui.textarea(t("JSON Schema"), value=EXAMPLE_SCHEMA, on_change=self._changed).props(
                f"autogrow outlined {DEBOUNCE}").classes("w-full font-mono").mark("structured-schema")
            self.schema.bind_visibility_from(self.structured, "value", value="json_schema")
            self.schema_problem = ui.label().classes("text-negative text-sm").mark("structured-schema-error")
        self.load("", DEFAULT_PARAMS)

    def load(self, system_prompt: str, params: dict) -> None:
        """Show a session's settings without saving them back.

        Setting a field fires its change handler only later (NiceGUI runs async handlers as tasks), so no flag
        held during load can tell those calls apart: _changed skips them because the values equal the loaded
        ones.
        """
        self.system_prompt, self.params = system_prompt, clean_params(params)
        self.system.value = system_prompt
        for key, number in self.numbers.items():
            number.value = self.params[key]
        self.stop.value = list(self.params["stop"])
        response_format = self.params["response_format"] or {"type": "off"}
        self.structured.value = response_format["type"]
        if "json_schema" in response_format:
            self.schema.value = json.dumps(response_format["json_schema"]["schema"], indent=2, ensure_ascii=False)
        self._schema_error(None)

    async def reset(self) -> None:
        self.load(self.system.value or "", DEFAULT_PARAMS)
        await self.on_change()

    async def _changed(self) -> None:
        params = {key: number.value for key, number in self.numbers.items()}
        for key in self.numbers:  # an emptied field means its default (seed: random)
            if params[key] is None:
                params[key] = DEFAULT_PARAMS[key]
        try:
            response_format = self._response_format()
        except ValueError as e:
            self._schema_error(str(e))
            return  # the last valid settings stay saved until the schema is fixed
        self._schema_error(None)
        system_prompt, params = self.system.value or "", clean_params(
            {**params, "stop": self.stop.value or [], "response_format": response_format})
        if (system_prompt, params) == (self.system_prompt, self.params):
            return  # a value load() showed, or a field edited back: nothing new to save
        self.system_prompt, self.params = system_prompt, params
        await self.on_change()

    def _response_format(self) -> dict | None:
        kind = self.structured.value
        if kind == "json_schema":
            return schema_response_format(self.schema.value or "")
        return {"type": "json_object"} if kind == "json_object" else None

    def _schema_error(self, message: str | None) -> None:
        self.schema_problem.text = t("Schema not used: {problem}", problem=message) if message else ""
        self.schema_problem.set_visibility(bool(message))
