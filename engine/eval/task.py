"""What a benchmark is to the runner: its items, how one item becomes a prompt, and what counts as right.

Two shapes cover every built-in and custom set. A ChoiceTask has items with a question, option texts and the
index of the right one: scored by log-likelihood of each option (PPL mode) or by the option letter a model
writes (generation mode); CircularEval rotates its options. A GenTask has an open answer checked after
extraction (a number, a boxed expression, a program run in the sandbox). Prompt pieces follow
lm-evaluation-harness's names (doc_to_text -> `query`, doc_to_target -> `target`, target_delimiter,
fewshot_delimiter, description) so that its formats carry over exactly. Nothing here imports torch.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

LETTERS = string.ascii_uppercase


@dataclass
class Task:
    name: str
    """lm-evaluation-harness's task name (arc_easy, mmlu_anatomy, gsm8k …)."""
    title: str
    """Shown in the UI."""
    licence: str
    """The data's licence, shown beside the task."""
    splits: tuple[str, ...] = ("test",)
    """Splits that exist locally; the first is the default."""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot_sampler: str = "first_n"
    """"first_n" (the pool's first k, as lm-eval's MMLU) or "random" (seeded, per item)."""
    kind: str = "choice"
    """"choice", "gen" or "code"."""

    # ---- data -------------------------------------------------------------------------------------------

    def docs(self, split: str) -> list[dict]:
        raise NotImplementedError

    def fewshot_pool(self, split: str) -> list[dict]:
        """Items few-shot examples are drawn from when evaluating `split` (never the item itself)."""
        other = [s for s in self.splits if s != split]
        return self.docs(other[0]) if other else self.docs(split)

    def check_split(self, split: str) -> str:
        split = split or self.splits[0]
        if split not in self.splits:
            raise ValueError(f"split: {self.name} has {', '.join(self.splits)} locally, not {split!r}")
        return split

    # ---- prompt pieces ----------------------------------------------------------------------------------

    def description(self, doc: dict) -> str:
        return ""

    def query(self, doc: dict) -> str:
        raise NotImplementedError

    def target(self, doc: dict) -> str:
        raise NotImplementedError

    def cot_target(self, doc: dict) -> str:
        """A few-shot answer with its reasoning, for chain-of-thought prompts (default: the plain target)."""
        return self.target(doc)

    def pick_shots(self, doc: dict, pool: list[dict], k: int, seed: int, sampler: str = "") -> list[dict]:
        candidates = [d for d in pool if d is not doc and d.get("id", object()) != doc.get("id")]
        if k <= 0:
            return []
        if (sampler or self.fewshot_sampler) == "first_n":
            return candidates[:k]
        rng = random.Random(f"{seed}:{doc.get('id', '')}:{doc.get('question', '')}")
        return rng.sample(candidates, min(k, len(candidates)))


@dataclass
class ChoiceTask(Task):
    """Items are dicts with `question`, `choices` (option texts) and `gold` (index of the right one)."""

    def choice_continuations(self, doc: dict) -> list[str]:
        """What is scored after the context, one per option (lm-eval's doc_to_choice)."""
        return list(doc["choices"])

    def choice_contexts(self, doc: dict) -> list[str] | None:
        """Per-option contexts (Winogrande's partial scoring); None when all options share the query."""
        return None

    def target(self, doc: dict) -> str:
        return self.choice_continuations(doc)[doc["gold"]]

    def letter_query(self, doc: dict) -> str:
        """The prompt for generation mode: the options written out, answered with a letter."""
        lines = [doc["question"].strip()]
        lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(doc["choices"])]
        return "\n".join(lines) + "\nAnswer:"

    def gold_letter(self, doc: dict) -> str:
        return LETTERS[doc["gold"]]


def rotate(doc: dict, shift: int) -> dict:
    """CircularEval: option contents moved `shift` places, the answer index moved with them."""
    n = len(doc["choices"])
    choices = [doc["choices"][(i + shift) % n] for i in range(n)]
    return {**doc, "choices": choices, "gold": (doc["gold"] - shift) % n, "rotation": shift}


@dataclass
class GenTask(Task):
    """Items are dicts with `question` and `answer`; the model writes, an extractor reads, a checker scores."""

    kind: str = "gen"
    extractor: str = "number"
    """"number" (after ####, else the last number), "boxed", "letter", "code" or "text"."""
    stop: tuple[str, ...] = ("\n\nQuestion:", "Question:")
    """Stop strings for generation."""
    max_tokens: int = 256
    """Generation budget per item."""

    def query(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def target(self, doc: dict) -> str:
        return doc["answer"]
