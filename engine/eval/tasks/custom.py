"""A user's own test set: CSV or JSONL in OpenCompass's custom shapes, with an optional settings sidecar.

Shapes (detected from the columns): multiple choice `question, A, B[, C …], answer` (answer a letter);
open `question, answer`; chat `messages` (a list of {role, content}, the last assistant turn is the answer).
The sidecar `<file>.eval.json` may set `name`, `licence`, `extractor` (open sets: text, number, boxed),
`prompt` (a template with {question} and, for choices, {A} {B} …), `split_fewshot` (how many leading rows are
kept as the few-shot pool), `judge` (open and chat sets: whether an LLM judge, when the run names one, grades the
answers; default true). Every row is checked on load: a bad one is reported as file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.eval.sources import DataError, read_rows, read_sidecar
from engine.eval.task import LETTERS, ChoiceTask, GenTask


def _shape(path: Path, keys: set[str]) -> str:
    if "messages" in keys:
        return "chat"
    if "question" in keys and "A" in keys:
        return "choice"
    if "question" in keys and "answer" in keys:
        return "open"
    raise DataError(f"{path}: line 1: columns {sorted(keys)} fit no known shape (multiple choice: question, A, B, "
                    "…, answer; open: question, answer; chat: messages)")


def _choice_doc(path: Path, line: int, row: dict) -> dict:
    letters = [c for c in LETTERS if c in row and str(row[c]).strip() != ""]
    if len(letters) < 2 or letters != list(LETTERS[: len(letters)]):
        raise DataError(f"{path}: line {line}: options must be consecutive columns A, B, C, …; got {letters}")
    question = str(row.get("question", "")).strip()
    if not question:
        raise DataError(f"{path}: line {line}: field 'question' is empty")
    answer = str(row.get("answer", "")).strip().upper()
    if answer not in letters:
        raise DataError(f"{path}: line {line}: field 'answer' must be one of {', '.join(letters)}, got "
                        f"{row.get('answer')!r}")
    return {"id": str(line), "question": question, "choices": [str(row[c]) for c in letters],
            "gold": letters.index(answer)}


def _open_doc(path: Path, line: int, row: dict) -> dict:
    for key in ("question", "answer"):
        if str(row.get(key, "")).strip() == "":
            raise DataError(f"{path}: line {line}: field {key!r} is empty")
    return {"id": str(line), "question": str(row["question"]), "answer": str(row["answer"])}


def _chat_doc(path: Path, line: int, row: dict) -> dict:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{path}: line {line}: field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise DataError(f"{path}: line {line}: field 'messages[{i}]' needs role (system/user/assistant) and "
                            "content (text)")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{path}: line {line}: field 'messages': the last message must be the assistant's answer")
    return {"id": str(line), "messages": messages[:-1], "question": messages[-2]["content"] if len(messages) > 1
            else "", "answer": messages[-1]["content"]}


@dataclass
class _UserRows:
    """What every custom set holds: its checked rows, the few-shot pool split off them, a prompt template."""

    rows: list[dict] = field(default_factory=list)
    pool: list[dict] = field(default_factory=list)
    template: str = ""

    def docs(self, split: str) -> list[dict]:
        return self.rows

    def fewshot_pool(self, split: str) -> list[dict]:
        return self.pool or self.rows


@dataclass
class CustomChoice(_UserRows, ChoiceTask):
    def query(self, doc: dict) -> str:
        if self.template:
            return self.template.format(question=doc["question"], **dict(zip(LETTERS, doc["choices"], strict=False)))
        return self.letter_query(doc)

    def choice_continuations(self, doc: dict) -> list[str]:
        return list(LETTERS[: len(doc["choices"])])


@dataclass
class CustomOpen(_UserRows, GenTask):
    open_answer: bool = True
    """Free-text answers: an LLM judge (EvalConfig.judge) grades them when the run names one."""

    def query(self, doc: dict) -> str:
        if self.template:
            return self.template.format(question=doc["question"])
        return super().query(doc)


def load_custom_task(path_text: str) -> ChoiceTask | GenTask:
    path = Path(path_text).expanduser()
    settings = read_sidecar(path)
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    shape = _shape(path, set(rows[0][1]))
    build = {"choice": _choice_doc, "open": _open_doc, "chat": _chat_doc}[shape]
    docs = [build(path, line, row) for line, row in rows]
    n_pool = int(settings.get("split_fewshot", 0))
    pool, docs = docs[:n_pool], docs[n_pool:]
    common = dict(name=str(path), title=settings.get("name") or path.stem,
                  licence=settings.get("licence", "your own data"), splits=("test",), rows=docs, pool=pool,
                  template=settings.get("prompt", ""))
    if shape == "choice":
        return CustomChoice(**common)
    extractor = settings.get("extractor", "text")
    if extractor not in ("text", "number", "boxed", "letter"):
        raise DataError(f"{path.with_name(path.name + '.eval.json')}: field 'extractor' must be text, number, "
                        f"boxed or letter, got {extractor!r}")
    judged = settings.get("judge", True)
    if not isinstance(judged, bool):
        raise DataError(f"{path.with_name(path.name + '.eval.json')}: field 'judge' must be true or false, got "
                        f"{judged!r}")
    return CustomOpen(**common, extractor=extractor, stop=tuple(settings.get("stop", ["\n\n"])),
                      max_tokens=int(settings.get("max_tokens", 256)), open_answer=judged)

