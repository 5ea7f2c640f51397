"""The counts a run keeps: bad input by reason (with file:line examples), records in/out of every step with
the reason each dropped record was dropped, a few samples per reason, languages, PII found, length histograms.

Shard workers each fill one Stats and the runner merges them, so every number is a sum and shards can finish
in any order (or come from a previous, interrupted run).
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

SAMPLES_PER_REASON = 5
SAMPLE_CHARS = 600
CHAR_BINS = [0, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000]
TOKEN_BINS = [0, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384]


def _add(into: dict, key: str, n: int = 1) -> None:
    into[key] = into.get(key, 0) + n


def histogram(bins: list[int]) -> dict:
    return {"edges": bins, "counts": [0] * len(bins)}


def hist_add(hist: dict, value: int) -> None:
    hist["counts"][bisect.bisect_right(hist["edges"], value) - 1] += 1


def sample(rec: dict, reason: str = "") -> dict:
    out = {"text": rec["text"][:SAMPLE_CHARS], "source": rec.get("source", "")}
    if reason:
        out["reason"] = reason
    return out


@dataclass
class Stats:
    records_read: int = 0
    bad_input: dict[str, int] = field(default_factory=dict)
    bad_examples: dict[str, list[str]] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)  # {"step", "in", "out", "dropped": {reason: n}}
    dropped_samples: dict[str, list[dict]] = field(default_factory=dict)
    kept_samples: list[dict] = field(default_factory=list)
    languages: dict[str, int] = field(default_factory=dict)
    mixed: int = 0
    pii: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0

    def bad(self, reason: str, file: str, line: int) -> None:
        _add(self.bad_input, reason)
        examples = self.bad_examples.setdefault(reason, [])
        if len(examples) < SAMPLES_PER_REASON:
            examples.append(f"{file}:{line}" if line else file)

    def step_row(self, name: str) -> dict:
        row = next((r for r in self.steps if r["step"] == name), None)
        if row is None:
            row = {"step": name, "in": 0, "out": 0, "dropped": {}}
            self.steps.append(row)
        return row

    def dropped(self, step: str, reason: str, rec: dict, count: bool = True) -> None:
        if count:
            _add(self.step_row(step)["dropped"], reason)
        samples = self.dropped_samples.setdefault(reason, [])
        if len(samples) < SAMPLES_PER_REASON:
            samples.append(sample(rec, reason))

    def kept(self, rec: dict) -> None:
        if "lang" in rec:
            _add(self.languages, rec["lang"])
            self.mixed += bool(rec.get("mixed"))
        for kind, n in rec.get("pii", {}).items():
            _add(self.pii, kind, n)
        if len(self.kept_samples) < 2 * SAMPLES_PER_REASON:
            self.kept_samples.append(sample(rec))

    def merge(self, other: Stats) -> None:
        self.records_read += other.records_read
        self.bytes_read += other.bytes_read
        self.mixed += other.mixed
        for mine, theirs in ((self.bad_input, other.bad_input), (self.languages, other.languages),
                             (self.pii, other.pii)):
            for k, n in theirs.items():
                _add(mine, k, n)
        for reason, examples in other.bad_examples.items():
            mine = self.bad_examples.setdefault(reason, [])
            mine.extend(examples[:SAMPLES_PER_REASON - len(mine)])
        for reason, samples in other.dropped_samples.items():
            mine = self.dropped_samples.setdefault(reason, [])
            mine.extend(samples[:SAMPLES_PER_REASON - len(mine)])
        self.kept_samples.extend(other.kept_samples[:2 * SAMPLES_PER_REASON - len(self.kept_samples)])
        for row in other.steps:
            mine = self.step_row(row["step"])
            mine["in"] += row["in"]
            mine["out"] += row["out"]
            for reason, n in row["dropped"].items():
                _add(mine["dropped"], reason, n)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Stats:
        return cls(**data)
