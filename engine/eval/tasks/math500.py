"""MATH-500: the 500-problem subset of Hendrycks' MATH (Lightman et al.); generation scored on the boxed answer.

Prompt in the Minerva style lm-eval's `minerva_math` uses: `Problem:\n<problem>\n\nSolution:`; the answer is
the last \\boxed{…} (or "The final answer is …"), compared after normalizing LaTeX spacing and wrappers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.sources import oe_eval_docs
from engine.eval.task import GenTask

LICENCE = "MIT (Hendrycks et al., MATH; PRM800K subset)"


@functools.cache
def _load() -> tuple[dict, ...]:
    return tuple({"id": str(d["index"]), "question": d["problem"], "answer": d["answer"],
                  "solution": d["solution"], "level": d.get("level")}
                 for d in oe_eval_docs("minerva_math_500", "gold_bpb_0shot", key="index"))


@dataclass
class Math500(GenTask):
    extractor: str = "boxed"

    def docs(self, split: str) -> list[dict]:
        return list(_load())

    def query(self, doc: dict) -> str:
        return f"Problem:\n{doc['question']}\n\nSolution:"

    def target(self, doc: dict) -> str:
        return doc["solution"]


TASKS = [Math500(name="math500", title="MATH-500", licence=LICENCE, splits=("test",), max_tokens=512,
                 stop=("\n\nProblem:", "Problem:"))]
