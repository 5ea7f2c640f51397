"""The Chat playground: talk to registered models through their servers, one model or two side by side.

/chat opens a new chat, whose session row is written with its first message (an unused page leaves no empty
session behind); /chat/{id} resumes one. Side by side, both panes get the same user turn and stream their
answers in parallel, each in its own task, so Stop cancels both and one slow model never holds the other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from nicegui import ui

from app import chat
from app.errors import NotFound
from app.registry import gguf_files, list_models
from app.tables import ChatMessage, ChatSession
from ui import state
from ui.components.chat_pane import ChatPane
from ui.components.chat_servers import ModelBar
from ui.components.chat_sessions import SessionList
from ui.components.chat_settings import SettingsPanel
from ui.components.offload import io_bound
from ui.frame import frame
from ui.i18n import t


@dataclass
class Loaded:
    names: list[str]
    """Registered models, then exported GGUF files (served by llama.cpp)."""
    chat: ChatSession | None = None
    by_pane: dict[int, list[ChatMessage]] = field(default_factory=dict)
    preselect: str | None = None
    """A model the link asked for (/chat?model=…), e.g. from the Export page."""


def _load(root: Path, session_id: int | None, preselect: str | None = None) -> Loaded:
    loaded = Loaded(names=[m.name for m in list_models(root)] + gguf_files(root), preselect=preselect)
    if preselect and preselect not in loaded.names:
        loaded.names.append(preselect)  # a GGUF file given by path: the server says if it cannot load it
    if session_id is not None:
        loaded.chat = chat.get_session(root, session_id)
        for m in chat.messages(root, session_id):
            loaded.by_pane.setdefault(m.pane, []).append(m)
    return loaded


class ChatView:
    def __init__(self, root: Path, loaded: Loaded):
        self.root = root
        self.session_id = loaded.chat.id if loaded.chat else None
        self.tasks: list[asyncio.Task] = []
        self.bar: ModelBar | None = None
        # Saves run in worker threads, where a later one could commit first: one at a time, each writing the
        # settings as they are when its turn comes, so the last commit holds the latest values.
        self.save_lock = asyncio.Lock()
        with ui.row().classes("w-full no-wrap items-start gap-4"):
            self.sessions = SessionList(root, self.session_id)
            with ui.column().classes("flex-1 min-w-0 gap-2"):
                if not loaded.names and loaded.chat is None:
                    ui.label(t("No models registered yet. Register one on the Models page to chat with it.")).classes(
                        "opacity-70")
                    ui.link(t("Open the Models page"), "/models")
                    return
                self._build(loaded)

    def _build(self, loaded: Loaded) -> None:
        chosen = loaded.chat.models if loaded.chat else [loaded.preselect] if loaded.preselect else loaded.names[:1]
        self.bar = ModelBar(self.root, loaded.names, chosen, locked=bool(loaded.by_pane),
                            on_change=self.models_changed)
        self.settings = SettingsPanel(self.settings_changed)
        if loaded.chat:
            self.settings.load(loaded.chat.system_prompt, loaded.chat.params)
        with ui.row().classes("w-full no-wrap gap-4"):
            self.panes = [ChatPane(self.root, index) for index in (0, 1)]
        for pane in self.panes:
            pane.show(loaded.by_pane.get(pane.index, []))
        with ui.row().classes("w-full items-end no-wrap gap-2"):
            self.input = ui.textarea(placeholder=t("Message (Enter sends, Shift+Enter adds a line)")).props(
                "autogrow outlined").classes("flex-1").mark("chat-input")
            # Enter alone sends; Shift+Enter keeps the textarea's own newline.
            self.input.on("keydown.enter.exact.prevent", self.send)
            self.send_btn = ui.button(t("Send"), icon="send", on_click=self.send).mark("send")
            self.stop_btn = ui.button(t("Stop"), icon="stop", on_click=self.stop).props("color=negative").mark(
                "stop")
            self.regen_btn = ui.button(t("Regenerate"), icon="refresh", on_click=self.regenerate).props(
                "flat").mark("regenerate")
        self._sync_panes()
        self._set_busy(False)

    async def start(self) -> None:
        """First reads before the page is delivered, then the servers' states every second."""
        await self.sessions.reload()
        if self.bar is not None:
            await self.bar.poll()
            ui.timer(1.0, self.bar.poll)

    def _active_panes(self) -> list[ChatPane]:
        return self.panes[:len(self.bar.models)]

    def _sync_panes(self) -> None:
        models = self.bar.models
        for pane in self.panes:
            pane.set_visibility(pane.index < len(models))
            if pane.index < len(models):
                pane.set_model(models[pane.index])

    def _set_busy(self, busy: bool) -> None:
        self.input.set_enabled(not busy)
        self.send_btn.set_visibility(not busy)
        self.stop_btn.set_visibility(busy)
        self.regen_btn.set_enabled(not busy)

    async def models_changed(self) -> None:
        self._sync_panes()
        if self.session_id is not None:
            await io_bound(chat.update_session, self.root, self.session_id, models=self.bar.models)

    async def settings_changed(self) -> None:
        if self.session_id is None:
            return
        async with self.save_lock:
            await io_bound(chat.update_session, self.root, self.session_id, params=self.settings.params,
                           system_prompt=self.settings.system_prompt)

    def _servers_ready(self) -> bool:
        missing = [s.model for s in self.bar.statuses[:len(self.bar.models)] if not s.url]
        if missing:
            ui.notify(t("The server of {model} is not ready: start it and wait until it says Ready.",
                        model=", ".join(m or "?" for m in missing)), type="warning")
        return not missing

    async def send(self) -> None:
        text = (self.input.value or "").strip()
        if not text or self.tasks or not self._servers_ready():
            return
        self.input.value = ""
        if self.session_id is None:
            row = await io_bound(chat.create_session, self.root, self.bar.models, self.settings.system_prompt,
                                 self.settings.params)
            self.session_id = row.id
            self.sessions.set_current(row.id)
            ui.navigate.history.replace(f"/chat/{row.id}")
        self.bar.side.disable()  # panes now hold their own history: the layout stays
        for pane in self._active_panes():
            pane.add_user(await io_bound(chat.add_message, self.root, self.session_id, "user", text, pane.index))
        await self._ask(self._active_panes())

    async def regenerate(self) -> None:
        if self.tasks or self.session_id is None or not self._servers_ready():
            return
        panes = self._active_panes()
        for pane in panes:
            if pane.ends_with_answer:
                await pane.drop_last_answer(self.session_id)
        await self._ask([p for p in panes if p.messages and p.messages[-1].role == "user"])

    async def _ask(self, panes: list[ChatPane]) -> None:
        if not panes:
            return
        self._set_busy(True)
        urls = [self.bar.statuses[p.index].url for p in panes]
        system_prompt, params = self.settings.system_prompt, dict(self.settings.params)
        self.tasks = [asyncio.create_task(p.answer(self.session_id, url, system_prompt, params))
                      for p, url in zip(panes, urls, strict=True)]
        try:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            self.tasks = []
            self._set_busy(False)
            await self.sessions.reload()

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


async def _open(raw_id: str | None, model: str | None = None) -> None:
    root = state.root()
    with frame(t("Chat")):
        try:
            if raw_id is not None and not raw_id.isdigit():
                raise NotFound(raw_id)
            loaded = await io_bound(_load, root, int(raw_id) if raw_id is not None else None, model)
        except NotFound:
            ui.label(t("There is no chat with id {id}.", id=raw_id)).classes("text-lg")
            ui.link(t("Start a new chat"), "/chat")
            return
        await ChatView(root, loaded).start()


@ui.page("/chat")
async def chat_page(model: str | None = None):
    await _open(None, model or None)


@ui.page("/chat/{session_id}")
async def chat_session_page(session_id: str):
    await _open(session_id)
