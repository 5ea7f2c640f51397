"""Finetune fixtures: small training files in every supported format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHATS = [
    [{"role": "system", "content": "Answer tersely."}, {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris."}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."},
     {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6."}],
    [{"role": "user", "content": "Color of the sky?"}, {"role": "assistant", "content": "Blue."}],
    [{"role": "user", "content": "Opposite of hot?"}, {"role": "assistant", "content": "Cold."}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
    [{"role": "user", "content": "First letter?"}, {"role": "assistant", "content": "A."}],
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def chat_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])


@pytest.fixture
def text_file(tmp_path) -> Path:
    docs = [f"Document {i}: ink stones grind ink with water, slowly and evenly, stroke after stroke."
            for i in range(12)]
    return write_jsonl(tmp_path / "text.jsonl", [{"text": d} for d in docs])


def tiny_config(data: Path, **overrides):
    from engine.finetune.config import FinetuneConfig

    defaults = dict(model="tiny", data=str(data), seq_len=64, batch_size=2, grad_accum=1, epochs=3, lr=5e-3,
                    save_every=0, lora_dropout=0.0, grad_checkpointing=False, device="cpu", packing=False)
    defaults.update(overrides)
    return FinetuneConfig(**defaults)
