"""HellaSwag: pick the most plausible ending of an everyday scene; lm-evaluation-harness's preprocessing.

lm-eval's `hellaswag`: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()), options =
preprocess(ending), where preprocess strips, turns " [title]" into ". ", drops other [bracketed] tags and
double spaces. Validation split (the test labels are hidden), as lm-eval.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from engine.eval.sources import hf_arrow_split, read_arrow
from engine.eval.task import ChoiceTask

LICENCE = "MIT (Zellers et al., HellaSwag)"


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


@functools.cache
def _load(split: str) -> tuple[dict, ...]:
    docs = []
    for i, r in enumerate(read_arrow(hf_arrow_split("hellaswag", "none", split))):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        docs.append({"id": str(r.get("ind", i)), "question": preprocess(r["activity_label"] + ": " + ctx),
                     "choices": [preprocess(e) for e in r["endings"]], "gold": int(r["label"])})
    return tuple(docs)


@dataclass
class HellaSwag(ChoiceTask):
    fewshot_sampler: str = "random"

    def docs(self, split: str) -> list[dict]:
        return list(_load(split))

    def query(self, doc: dict) -> str:
        return doc["question"]


TASKS = [HellaSwag(name="hellaswag", title="HellaSwag", licence=LICENCE, splits=("validation",))]
