"""One conversation pane of the Chat page: its bubbles, and one answer streamed into the last of them.

A pane holds the messages of its model (user turns are stored in every pane), so side-by-side models each
carry their own history. Tokens arrive far faster than a browser wants redraws: the bubble is redrawn at most
UPDATE_INTERVAL_S apart, and once more at the end. Errors from the server land as a red notice in the pane.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
from nicegui import ui

from app import chat
from app.chat_client import Answer, ModelClient, request_messages
from app.registry import display_name
from app.tables import ChatMessage
from ui.components.offload import io_bound
from ui.i18n import t

UPDATE_INTERVAL_S = 0.05  # ~20 redraws a second
STOPPED = "stopped"


def stats_text(m: ChatMessage) -> str:
    """The line under an answer: speed, size, and how much of the prompt the prefix cache served."""
    if m.finish_reason == STOPPED:
        return t("Stopped")
    parts = [t("{tps:.1f} tokens/s", tps=m.tokens_per_s), t("{n} tokens", n=m.completion_tokens),
             t("prefix cache {cached} of {prompt} prompt tokens", cached=m.cached_tokens, prompt=m.prompt_tokens)]
    if m.finish_reason == "length":
        parts.append(t("cut at max tokens"))
    return " · ".join(parts)


def error_message(e: Exception, model: str) -> str:
    if isinstance(e, openai.APIConnectionError):
        return t("Could not reach the server of {model}: {error}", model=model, error=e.message)
    if isinstance(e, openai.APIError):
        body = e.body if isinstance(e.body, dict) else {}
        return str(body.get("message") or e.message)
    return f"{type(e).__name__}: {e}"


class ChatPane(ui.column):
    def __init__(self, root: Path, index: int):
        super().__init__()
        self.root, self.index = root, index
        self.model = ""
        self.messages: list[ChatMessage] = []
        self.classes("flex-1 min-w-0 gap-1").mark(f"pane-{index}")
        with self:
            self.title = ui.label().classes("font-medium")
            self.scroll = ui.scroll_area().classes("w-full h-[55vh] border rounded")
            with self.scroll:
                self.box = ui.column().classes("w-full gap-1 pr-2")

    def set_model(self, model: str) -> None:
        self.model = model
        self.title.set_text(display_name(model))

    def show(self, messages: list[ChatMessage]) -> None:
        """Draw the pane's stored messages afresh."""
        self.messages = list(messages)
        self.box.clear()
        with self.box:
            if not self.messages:
                ui.label(t("Send a message to start.")).classes("opacity-60 p-2")
            for m in self.messages:
                if m.role == "user":
                    self._user_bubble(m.content)
                elif m.role == "assistant":
                    _, _, stats = self._answer_bubble(display_name(m.model_name), m.content)
                    stats.set_text(stats_text(m))
        self.scroll.scroll_to(percent=1.0)

    def _user_bubble(self, text: str) -> None:
        with ui.chat_message(name=t("You"), sent=True).classes("w-full").mark(f"user-{self.index}"):
            ui.label(text).classes("whitespace-pre-wrap")  # typed as plain text: keep its line breaks

    def _answer_bubble(self, model: str, text: str) -> tuple[ui.chat_message, ui.markdown, ui.label]:
        with ui.chat_message(name=model, sent=False).classes("w-full").mark(f"answer-{self.index}") as bubble:
            md = ui.markdown(text).classes("min-w-8")
        stats = ui.label().classes("text-xs opacity-70 pl-12").mark(f"stats-{self.index}")
        return bubble, md, stats

    def add_user(self, message: ChatMessage) -> None:
        if not self.messages:
            self.box.clear()
        self.messages.append(message)
        with self.box:
            self._user_bubble(message.content)
        self.scroll.scroll_to(percent=1.0)

    @property
    def ends_with_answer(self) -> bool:
        return bool(self.messages) and self.messages[-1].role == "assistant"

    async def drop_last_answer(self, session_id: int) -> None:
        """For Regenerate: the stored answer goes, so the same user turn is asked again."""
        await io_bound(chat.delete_last_assistant, self.root, session_id, self.index)
        self.show(self.messages[:-1])

    async def answer(self, session_id: int, url: str, system_prompt: str, params: dict) -> None:
        """Stream the model's answer to the pane's history; store it (a stopped one too, as far as it got)."""
        turns = [(m.role, m.content) for m in self.messages if m.role in ("user", "assistant")]
        with self.box:
            bubble, md, stats = self._answer_bubble(display_name(self.model), "")
            stats.set_text(t("Thinking…"))
        answer, last_draw = Answer(), 0.0

        def draw() -> None:
            nonlocal last_draw
            if time.monotonic() - last_draw >= UPDATE_INTERVAL_S:
                md.set_content(answer.text)
                stats.set_text("")
                self.scroll.scroll_to(percent=1.0)
                last_draw = time.monotonic()

        try:
            await ModelClient(url).stream_chat(self.model, request_messages(system_prompt, turns), params,
                                               answer=answer, on_delta=draw)
        except asyncio.CancelledError:  # Stop: the stream is closed, which aborts the request on the server
            answer.finish_reason = STOPPED
        except Exception as e:  # the server's errors (prompt too long, bad value, gone): shown, never raised
            bubble.delete()
            stats.delete()
            with self.box:
                ui.label(error_message(e, self.model)).classes(
                    "w-full text-negative bg-red-50 dark:bg-red-950 rounded p-2 whitespace-pre-wrap").mark(
                    f"chat-error-{self.index}")
            self.scroll.scroll_to(percent=1.0)
            return
        md.set_content(answer.text)
        if not answer.text and answer.finish_reason == STOPPED:  # stopped before the first token: nothing to keep
            bubble.delete()
            stats.delete()
            return
        message = await io_bound(chat.add_message, self.root, session_id, "assistant", answer.text, self.index,
                                 model_name=self.model, **answer.stats())
        self.messages.append(message)
        stats.set_text(stats_text(message))
        self.scroll.scroll_to(percent=1.0)
