"""The Chat page's list of past sessions: newest first, click to resume, delete after a confirmation."""

from __future__ import annotations

from pathlib import Path

from nicegui import ui

from app import chat
from app.tables import ChatSession
from ui.components.formatting import human_time
from ui.components.offload import io_bound
from ui.i18n import t


class SessionList:
    def __init__(self, root: Path, current_id: int | None):
        self.root, self.current_id = root, current_id
        self.sessions: list[ChatSession] = []
        self.pending: ChatSession | None = None  # the one the open dialog asks about
        with ui.column().classes("w-64 shrink-0 gap-2"):
            ui.button(t("New chat"), icon="add", on_click=lambda: ui.navigate.to("/chat")).classes(
                "w-full").mark("new-chat")
            self.render()
        self.dialog = self._build_dialog()

    async def reload(self) -> None:
        self.sessions = await io_bound(chat.list_sessions, self.root)
        self.render.refresh()

    def set_current(self, session_id: int) -> None:
        self.current_id = session_id

    @ui.refreshable_method
    def render(self) -> None:
        if not self.sessions:
            ui.label(t("No chats yet.")).classes("text-sm opacity-60")
        with ui.list().props("dense separator").classes("w-full"):
            for s in self.sessions:
                self._item(s)

    def _item(self, s: ChatSession) -> None:
        item = ui.item(on_click=lambda s=s: ui.navigate.to(f"/chat/{s.id}")).props("clickable")
        if s.id == self.current_id:
            item.props("active")
        with item.mark(f"session-{s.id}"):
            with ui.item_section():
                ui.item_label(s.title or t("Untitled chat")).props("lines=1")
                ui.item_label(f"{human_time(s.updated_at)} · {' | '.join(s.models)}").props("caption lines=1")
            with ui.item_section().props("side"):
                button = ui.button(icon="delete", on_click=lambda s=s: self.confirm(s)).props(
                    "flat dense round size=sm color=negative").mark(f"delete-session-{s.id}")
                # Browser-side only: keep the click from reaching the row, which would open the chat being deleted.
                button.on("click.stop", js_handler="() => {}")
                with button:
                    ui.tooltip(t("Delete"))

    def _build_dialog(self) -> ui.dialog:
        with ui.dialog() as dialog, ui.card():
            self.dialog_text = ui.label().classes("text-lg")
            with ui.row().classes("w-full justify-end"):
                ui.button(t("Cancel"), on_click=dialog.close).props("flat")
                ui.button(t("Delete"), on_click=self.delete).props("color=negative").mark("confirm-delete-session")
        return dialog

    def confirm(self, s: ChatSession) -> None:
        self.pending = s
        self.dialog_text.set_text(t("Delete the chat {title} and its messages?", title=s.title or t("Untitled chat")))
        self.dialog.open()

    async def delete(self) -> None:
        self.dialog.close()
        await io_bound(chat.delete_session, self.root, self.pending.id)
        ui.notify(t("Chat deleted."))
        if self.pending.id == self.current_id:
            ui.navigate.to("/chat")
        else:
            await self.reload()
