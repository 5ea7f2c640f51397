"""Turn examples into fixed-budget training rows: SFT samples packed without cross-sample leakage, raw text
concatenated and cut to the sequence length, then batches in a seeded order that a resumed run can replay.

Leakage: position ids restart at 0 for every sample inside a packed row and no attention mask is passed;
transformers then builds a block-diagonal causal mask from the position ids (varlen with flash attention), so
a token never attends to the sample before it. Padding is one more "sample" with its own positions and no loss.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.finetune.data import Example
from engine.finetune.template import IGNORE, Tokenized, tokenize_conversation, tokenize_text


@dataclass
class Row:
    """One training sequence: ids, labels and position ids of equal length."""

    input_ids: list[int]
    """Token ids."""
    labels: list[int]
    """IGNORE where no loss is taken."""
    position_ids: list[int]
    """Restart at 0 at each packed sample's start."""


def sft_samples(tokenizer, examples: list[Example], seq_len: int) -> list[Tokenized]:
    """Tokenized conversations that keep at least one trained token after truncation."""
    samples = [tokenize_conversation(tokenizer, ex.messages, seq_len, ex.tools) for ex in examples]
    return [s for s in samples if any(label != IGNORE for label in s.labels[1:])]


def pretrain_rows(tokenizer, examples: list[Example], seq_len: int) -> list[Row]:
    """Continued pretraining: all documents end to end, cut into seq_len rows (the tail is kept if long enough)."""
    stream: list[int] = []
    for ex in examples:
        stream.extend(tokenize_text(tokenizer, ex.text))
    rows = []
    for start in range(0, len(stream), seq_len):
        chunk = stream[start:start + seq_len]
        if len(chunk) >= 2:
            rows.append(Row(chunk, list(chunk), list(range(len(chunk)))))
    return rows


OPEN_ROWS = 64  # rows still considered for filling: first-fit over all rows would be quadratic


def pack(samples: list[Tokenized], seq_len: int, enabled: bool = True) -> list[Row]:
    """Greedy first-fit of samples into rows of at most seq_len tokens (one sample a row when disabled)."""
    rows: list[Row] = []
    open_rows: list[Row] = []
    for s in samples:
        # The first label of a sample would be predicted from the previous sample's last token: never train it.
        labels = [IGNORE] + s.labels[1:]
        positions = list(range(len(s.input_ids)))
        target = None
        if enabled:
            target = next((r for r in open_rows if len(r.input_ids) + len(s.input_ids) <= seq_len), None)
        if target is None:
            rows.append(Row(list(s.input_ids), labels, positions))
            open_rows = (open_rows + [rows[-1]])[-OPEN_ROWS:]
        else:
            target.input_ids += s.input_ids
            target.labels += labels
            target.position_ids += positions
    return rows


def split_eval(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval): a seeded random fraction held out; at least one row each way when there are two."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def epoch_order(n_rows: int, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch: a function of (seed, epoch) only, so a resumed run replays it exactly."""
    order = list(range(n_rows))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def collate(rows: list[Row], pad_id: int) -> dict:
    """Tensors for one micro-batch, right-padded to its longest row with a loss-free padding segment."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids, labels, positions = [], [], []
    for r in rows:
        pad = width - len(r.input_ids)
        ids.append(r.input_ids + [pad_id] * pad)
        labels.append(r.labels + [IGNORE] * pad)
        positions.append(r.position_ids + list(range(pad)))
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions)}
