"""Turn one item of a task into the exact prompt(s) a model sees, torch-free so the web page can preview them.

Base style assembles text the way lm-evaluation-harness does: description + each few-shot example as
query + target_delimiter + target, joined by fewshot_delimiter, + fewshot_delimiter + the item's query. Chat style
gives the same pieces as turns (description as system, each example a user/assistant pair, the query last),
rendered later by the model's own chat template. PPL mode pairs one context with each option's continuation;
generation mode gives one prompt whose answer is extracted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.eval.task import ChoiceTask, Task

COT_SUFFIX = " Let's think step by step."


@dataclass
class PromptSettings:
    mode: str = "ppl"
    """"ppl" (log-likelihood of each option) or "gen" (generate, then extract the answer)."""
    shots: int = 0
    """Few-shot examples before each item."""
    sampler: str = ""
    """"first_n", "random" (seeded) or "" for the task's own default (lm-eval's)."""
    seed: int = 1234
    """Seed of the random few-shot sampler."""
    cot: bool = False
    """Chain-of-thought: ask for reasoning before the answer (generation mode)."""
    style: str = "base"
    """"base" (plain text, as lm-eval by default) or "chat" (the model's chat template)."""


@dataclass
class Prompt:
    text: str = ""
    """The whole prompt in base style."""
    messages: list[dict] = field(default_factory=list)
    """The turns in chat style (rendered with the model's template by the backend)."""

    def preview(self) -> str:
        if not self.messages:
            return self.text
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages)


def _query(task: Task, doc: dict, settings: PromptSettings) -> str:
    if settings.mode == "gen" and isinstance(task, ChoiceTask):
        query = task.letter_query(doc)
    else:
        query = task.query(doc)
    if settings.cot and settings.mode == "gen":
        query += COT_SUFFIX
    return query


def _target(task: Task, doc: dict, settings: PromptSettings) -> str:
    if settings.mode == "gen" and isinstance(task, ChoiceTask):
        return task.gold_letter(doc)
    return task.cot_target(doc) if settings.cot else task.target(doc)


def shots_for(task: Task, doc: dict, pool: list[dict], settings: PromptSettings) -> list[dict]:
    sampler = settings.sampler or task.fewshot_sampler
    if sampler not in ("first_n", "random"):
        raise ValueError(f"sampler: must be 'first_n' or 'random', got {sampler!r}")
    return task.pick_shots(doc, pool, settings.shots, settings.seed, sampler)


def build_prompt(task: Task, doc: dict, shots: list[dict], settings: PromptSettings,
                 final_query: str | None = None) -> Prompt:
    """The context for `doc` (final_query replaces the item's query: Winogrande's per-option contexts)."""
    query = _query(task, doc, settings) if final_query is None else final_query
    if "messages" in doc:  # a custom chat item: its own turns
        return Prompt(text="\n\n".join(m["content"] for m in doc["messages"]), messages=list(doc["messages"]))
    if settings.style == "chat":
        messages = [{"role": "system", "content": task.description(doc).strip()}] if task.description(doc) else []
        for shot in shots:
            messages.append({"role": "user", "content": _query(task, shot, settings)})
            messages.append({"role": "assistant", "content": _target(task, shot, settings)})
        messages.append({"role": "user", "content": query})
        return Prompt(messages=messages)
    examples = [_query(task, s, settings) + task.target_delimiter + _target(task, s, settings) for s in shots]
    text = task.description(doc) + "".join(e + task.fewshot_delimiter for e in examples) + query
    return Prompt(text=text)


def choice_requests(task: ChoiceTask, doc: dict, shots: list[dict], settings: PromptSettings
                    ) -> list[tuple[Prompt, str]]:
    """(context, continuation) per option for PPL mode; the delimiter leads the continuation, as in lm-eval."""
    contexts = task.choice_contexts(doc)
    continuations = task.choice_continuations(doc)
    delimiter = "" if settings.style == "chat" else task.target_delimiter
    if contexts is None:
        prompt = build_prompt(task, doc, shots, settings)
        return [(prompt, delimiter + c) for c in continuations]
    return [(build_prompt(task, doc, shots, settings, final_query=ctx), delimiter + cont)
            for ctx, cont in zip(contexts, continuations, strict=True)]
