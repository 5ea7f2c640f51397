"""PIQA: physical commonsense, two solutions to a goal; lm-evaluation-harness's prompt.

lm-eval's `piqa`: `Question: <goal>\nAnswer:` with each solution scored as the continuation. Validation split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.sources import hf_arrow_split, read_arrow
from engine.eval.task import ChoiceTask

LICENCE = "AFL-3.0 (Bisk et al., PIQA)"


@functools.cache
def _load(split: str) -> tuple[dict, ...]:
    return tuple({"id": str(i), "question": r["goal"], "choices": [r["sol1"], r["sol2"]], "gold": int(r["label"])}
                 for i, r in enumerate(read_arrow(hf_arrow_split("piqa", "plain_text", split))))


@dataclass
class PIQA(ChoiceTask):
    fewshot_sampler: str = "random"

    def docs(self, split: str) -> list[dict]:
        return list(_load(split))

    def query(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"


TASKS = [PIQA(name="piqa", title="PIQA", licence=LICENCE, splits=("validation",))]
