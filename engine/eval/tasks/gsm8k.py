"""GSM8K: grade-school maths word problems, answered in generation mode and scored on the final number.

Prompt as lm-eval's `gsm8k`: `Question: <question>\nAnswer:`. The local data has no train split, so k-shot
examples are the eight chain-of-thought exemplars (Wei et al.) that oe-eval's request file carries, each ending
"So the answer is N."; the answer is read after `####` or "the answer is", else the last number (lm-eval's
flexible extract), and compared as a number.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.sources import oe_eval_contexts, oe_eval_docs
from engine.eval.task import GenTask

LICENCE = "MIT (OpenAI, GSM8K)"
VARIANT = "gold_bpb_5shot"


@functools.cache
def _load() -> tuple[dict, ...]:
    return tuple({"id": str(d["id"]), "question": d["question"], "answer": d["short_answer"],
                  "solution": d["answer"]} for d in oe_eval_docs("gsm8k", VARIANT, key="id"))


@functools.cache
def _exemplars() -> tuple[dict, ...]:
    blocks = oe_eval_contexts("gsm8k", VARIANT)[0].split("\n\n")[:-1]  # the last block is the asked question
    shots = []
    for i, block in enumerate(blocks):
        question, _, answer = block.removeprefix("Question: ").partition("\nAnswer: ")
        shots.append({"id": f"exemplar-{i}", "question": question, "cot": answer,
                      "answer": answer.rsplit("the answer is", 1)[-1].strip(" .")})
    return tuple(shots)


@dataclass
class GSM8K(GenTask):
    extractor: str = "number"

    def docs(self, split: str) -> list[dict]:
        return list(_load())

    def fewshot_pool(self, split: str) -> list[dict]:
        return list(_exemplars())

    def target(self, doc: dict) -> str:
        return doc.get("cot") or f"{doc['solution']}"


TASKS = [GSM8K(name="gsm8k", title="GSM8K", licence=LICENCE, splits=("test",), max_tokens=256,
               stop=("Question:", "</s>", "<|im_end|>"))]
