"""The errors the store and the registry raise, in a module of their own so every layer can catch them.

They sit apart from app.db so that the migrations (which app.db runs) and the faces (CLI, pages) can name
them without importing the database machinery or each other.
"""

from __future__ import annotations


class NotFound(LookupError):
    """No row with that id or name; the message says what was asked for and what exists."""


class DatabaseError(RuntimeError):
    """The database cannot be used (locked, newer schema, corrupt): the message says which file and why."""
