"""The response cache every model call of an evaluation goes through (the model's answers, log-likelihoods and
a judge's verdicts alike): keyed by the model's identity, the exact prompt and the settings that change an answer,
filled in chunks, so a cancelled or killed run resumes where it stopped and a rerun with the same settings is free.
Its own module so the runner and the judge share it without importing each other.
"""

from __future__ import annotations

import hashlib
import json
from typing import Protocol

CHUNK = 128  # requests per backend call: the unit of resumption


class ResponseCache(Protocol):
    def get_many(self, keys: list[str]) -> dict[str, dict]: ...

    def put_many(self, values: dict[str, dict]) -> None: ...


class MemoryCache:
    """A cache that lives as long as the run (the job passes a SQLite-backed one)."""

    def __init__(self):
        self.data: dict[str, dict] = {}

    def get_many(self, keys):
        return {k: self.data[k] for k in keys if k in self.data}

    def put_many(self, values):
        self.data.update(values)


def cache_key(identity: str, kind: str, *parts) -> str:
    raw = json.dumps([identity, kind, *parts], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()
