"""Chat history: sessions and their messages, so conversations survive restarts and can be resumed."""

from __future__ import annotations

import time
from pathlib import Path

from sqlmodel import delete, select

from app.db import session
from app.errors import NotFound
from app.tables import ChatMessage, ChatSession


def create_session(root: Path, models: list[str], system_prompt: str = "", params: dict | None = None,
                   title: str = "") -> ChatSession:
    if not models:
        raise ValueError("models: pick at least one model")
    with session(root) as s:
        chat = ChatSession(models=models, system_prompt=system_prompt, params=params or {}, title=title)
        s.add(chat)
    return chat


def list_sessions(root: Path, limit: int = 50) -> list[ChatSession]:
    with session(root) as s:
        return list(s.exec(select(ChatSession).order_by(ChatSession.updated_at.desc()).limit(limit)).all())


def get_session(root: Path, session_id: int) -> ChatSession:
    with session(root) as s:
        chat = s.get(ChatSession, session_id)
    if chat is None:
        raise NotFound(f"no chat session with id {session_id}")
    return chat


def update_session(root: Path, session_id: int, **fields) -> ChatSession:
    with session(root) as s:
        chat = s.get(ChatSession, session_id)
        if chat is None:
            raise NotFound(f"no chat session with id {session_id}")
        for k, v in fields.items():
            setattr(chat, k, v)
        chat.updated_at = time.time()
        s.add(chat)
    return chat


def messages(root: Path, session_id: int, pane: int | None = None) -> list[ChatMessage]:
    with session(root) as s:
        q = select(ChatMessage).where(ChatMessage.session_id == session_id).order_by(ChatMessage.id)
        if pane is not None:
            q = q.where(ChatMessage.pane == pane)
        return list(s.exec(q).all())


def add_message(root: Path, session_id: int, role: str, content: str, pane: int = 0, **stats) -> ChatMessage:
    with session(root) as s:
        chat = s.get(ChatSession, session_id)
        if chat is None:
            raise NotFound(f"no chat session with id {session_id}")
        msg = ChatMessage(session_id=session_id, role=role, content=content, pane=pane, **stats)
        chat.updated_at = msg.created_at
        if not chat.title and role == "user":
            chat.title = content.strip().splitlines()[0][:60] if content.strip() else ""
        s.add_all([msg, chat])
    return msg


def delete_last_assistant(root: Path, session_id: int, pane: int) -> None:
    """For regenerate: drop the pane's last answer so the same user turn is asked again."""
    last = [m for m in messages(root, session_id, pane) if m.role == "assistant"]
    if last:
        with session(root) as s:
            s.exec(delete(ChatMessage).where(ChatMessage.id == last[-1].id))


def delete_session(root: Path, session_id: int) -> None:
    with session(root) as s:
        s.exec(delete(ChatMessage).where(ChatMessage.session_id == session_id))
        s.exec(delete(ChatSession).where(ChatSession.id == session_id))
