"""An LLM grades open answers: OpenCompass's A/B correct-incorrect protocol, and pairwise comparison of two models.

Rules cannot score a free-text answer ("Paris" vs "The capital is Paris."), so a judge model reads the question, the
reference answer and the prediction and replies `A` (CORRECT) or `B` (INCORRECT), as OpenCompass's
GenericLLMEvaluator asks; the share of A is `judge_accuracy`. Pairwise (AlpacaEval / OpenCompass compare) shows the
judge both models' answers and asks which is better, once in each order to cancel position bias; each order scores
the run's model 1 (preferred), 0.5 (tie) or 0 (the other preferred), and `win_rate` is the mean of both orders, so a
tie or an order-inconsistent verdict counts 0.5. A reply that names no verdict is never a crash: A/B counts it
incorrect, pairwise counts that order a tie, and the sample is flagged `judge_invalid`. Judge calls go through the
run's response cache like every other model call, so a rerun is free and a stopped one resumes.

Metrics of a judged task (OpenCompass reports the first as `accuracy`; ours name the judge so they never mix with
rule-based scores): `judge_accuracy` (share graded A), `judge_invalid` (share of replies without a readable
verdict: watch it when trusting a small judge) and, with a second model, `win_rate`. The rule-based metrics
(`exact_match`) stay beside them; a sample's `correct` becomes the judge's verdict, the rule's kept in
`rule_correct`.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata

from engine.eval import extract as ex
from engine.eval.backends import Backend, GenParams
from engine.eval.cache import CHUNK, cache_key
from engine.eval.metrics import summarize
from engine.eval.task import ChoiceTask, Task
from engine.progress import Cancelled, Progress, check_cancel, no_progress

GRADER_TEMPLATE = """\
As a grading expert, judge whether the candidate's final answer below agrees with the standard answer, that is,
whether the candidate answered the question correctly.

Criteria:
1. Take the standard answer as correct. Do not solve the question yourself; only decide whether the candidate's
answer means the same as the standard answer.
2. The same answer may be written differently (other wording, an equivalent expression or formula, a number with
or without units, text inside \\boxed{{}}): equivalent answers are correct.
3. An answer with several parts (several blanks, several options) is correct only when every part is.
4. An answer that is empty, cut off, repeats itself, or refuses to answer is incorrect.

Grade the candidate's answer as one of:
A: CORRECT
B: INCORRECT
Reply with the letter "A" or "B" only, nothing around it.

<Original Question Begin>:
{question}
<Original Question End>

<Gold Target Begin>:
{gold}
<Gold Target End>

<Predicted Answer Begin>:
{prediction}
<Predicted End>

Judging the correctness of the candidate's answer:"""

PAIRWISE_TEMPLATE = """\
You are an impartial judge. Compare two assistants' answers to the user's question below and decide which answer
is better: more correct first, then more helpful, relevant and complete. A reference answer is given when one is
known; use it to check correctness. The order in which the answers are shown must not influence you, nor their
length, nor the assistants' names.

<Question Begin>:
{question}
<Question End>

<Reference Answer Begin>:
{reference}
<Reference Answer End>

<Answer A Begin>:
{answer_a}
<Answer A End>

<Answer B Begin>:
{answer_b}
<Answer B End>

Reply with one letter only: "A" if answer A is better, "B" if answer B is better, "C" if they are equally good."""

JUDGE_PARAMS = GenParams(max_tokens=512, stop=(), temperature=0.0, n=1)
"""Greedy; room for a reasoning judge's <think> block before its letter."""

_LETTER = re.compile(r"(?<![A-Za-z])([ABC])(?![A-Za-z])")
_WORDS = ((re.compile(r"\bINCORRECT\b|\bWRONG\b|不正确|错误|不对"), "B"), (re.compile(r"\bCORRECT\b|正确"), "A"))


class JudgeUnavailable(RuntimeError):
    """The judge could not be loaded or reached; the model's answers were kept."""


def describe(ref: str, backend: Backend | None) -> str:
    """The judge as an error message names it: its reference (a URL, a path) and the model behind a URL."""
    model = getattr(backend, "model", "")
    return f"{ref} (model {model})" if model and model not in ref else ref


def judge_failure(name: str, backend: Backend | None, error: BaseException) -> JudgeUnavailable:
    return JudgeUnavailable(
        f"judge: {describe(name, backend)} could not be reached or loaded: {type(error).__name__}: {error}. The "
        "model's answers are stored and cached; run the same evaluation again once the judge is up (only the "
        "judging is left to do).")


def protocol() -> dict:
    """The exact prompts a judge sees, recorded with every judged run (and hashed into its settings)."""
    return {"grader_template": GRADER_TEMPLATE, "pairwise_template": PAIRWISE_TEMPLATE,
            "judge_max_tokens": JUDGE_PARAMS.max_tokens}


def protocol_hash() -> str:
    return hashlib.sha256(f"{GRADER_TEMPLATE}\0{PAIRWISE_TEMPLATE}".encode()).hexdigest()[:10]


def _verdict_text(reply: str) -> str:
    """The reply a verdict is read from: reasoning dropped, full-width letters (Ａ) folded to ASCII."""
    return unicodedata.normalize("NFKC", ex.strip_think(reply or "")[0]).strip()


def parse_grade(reply: str) -> str | None:
    """'A' (correct), 'B' (incorrect) or None: the first stand-alone A/B letter, else CORRECT/INCORRECT/正确/错误."""
    text = _verdict_text(reply)
    for m in _LETTER.finditer(text):
        if m.group(1) in "AB":
            return m.group(1)
    upper = text.upper()
    for pattern, letter in _WORDS:
        if pattern.search(upper):
            return letter
    return None


def parse_preference(reply: str) -> str | None:
    """'A', 'B' or 'C' (tie) from a pairwise reply: the first stand-alone letter of the three, else None."""
    m = _LETTER.search(_verdict_text(reply))
    return m.group(1) if m else None


def is_judged(task: Task, cfg) -> bool:
    """Whether the judge grades this task: open-answer sets by default, any generation task when named."""
    if task.kind != "gen" and not (isinstance(task, ChoiceTask) and cfg.mode == "gen"):
        return False  # code (the sandbox decides), agents, and PPL scoring have no free answer to judge
    if cfg.judge_tasks.strip() == "all":
        return True
    named = [n.strip() for n in cfg.judge_tasks.split(",") if n.strip()]
    return task.name in named if named else bool(getattr(task, "open_answer", False))


def question_and_gold(task: Task, doc: dict) -> tuple[str, str]:
    """What the judge is shown as the question and the standard answer of one item."""
    if isinstance(task, ChoiceTask):
        return task.letter_query(doc).removesuffix("\nAnswer:"), f"{task.gold_letter(doc)}. {task.target(doc)}"
    if "messages" in doc:  # a chat item: the conversation so far is the question
        turns = [f"[{m['role']}] {m['content']}" for m in doc["messages"]]
        return "\n".join(turns), str(doc.get("answer", ""))
    return str(doc.get("question", "")), str(doc.get("answer", ""))


class Judge:
    """One judge model: grades a task's samples (A/B) and compares them with another model's (pairwise)."""

    def __init__(self, backend: Backend, name: str, cache, progress: Progress = no_progress,
                 cancel: threading.Event | None = None):
        self.backend, self.name, self.cache, self.progress, self.cancel = backend, name, cache, progress, cancel

    def _render(self, text: str) -> str:
        try:
            return self.backend.render_chat([{"role": "user", "content": text}])
        except ValueError:  # a base model without a chat template reads the plain text
            return text

    def ask(self, texts: list[str], label: str) -> list[str]:
        """The judge's replies, from the response cache where it has them, the rest computed in chunks."""
        prompts = [self._render(t) for t in texts]
        keys = [cache_key(self.backend.identity, "judge", p, vars(JUDGE_PARAMS)) for p in prompts]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        by_key = dict(zip(keys, prompts, strict=True))
        for first in range(0, len(todo), CHUNK):
            check_cancel(self.cancel)
            chunk = todo[first:first + CHUNK]
            self.progress(message=f"{label}: judge {self.name}, {len(found)}/{len(set(keys))} replies")
            try:
                texts_out = self.backend.generate([by_key[k] for k in chunk], JUDGE_PARAMS, cancel=self.cancel)
            except Cancelled:
                raise
            except Exception as e:
                raise judge_failure(self.name, None, e) from e
            values = {k: {"texts": t} for k, t in zip(chunk, texts_out, strict=True)}
            self.cache.put_many(values)
            found.update(values)
        return [(found[k]["texts"] or [""])[0] for k in keys]

    def grade(self, task: Task, items: list[dict], samples: list[dict]) -> dict[str, dict]:
        """A/B verdicts into each sample (`correct` becomes the judge's); returns judge_accuracy, judge_invalid.

        items: the item (after any CircularEval rotation) each sample answered, in the same order."""
        texts = []
        for s, item in zip(samples, items, strict=True):
            question, gold = question_and_gold(task, item)
            texts.append(GRADER_TEMPLATE.format(question=question, gold=gold,
                                                prediction=ex.strip_think(s["answer"])[0].strip()))
        replies = self.ask(texts, f"{task.title}: grading")
        for s, reply in zip(samples, replies, strict=True):
            verdict = parse_grade(reply)
            s.setdefault("rule_correct", s["correct"])
            s["correct"] = verdict == "A"
            s["judge_invalid"] = verdict is None
            s["judge"] = {"verdict": verdict or "", "reply": reply, "invalid": verdict is None}
        return summarize({"judge_accuracy": [float(s["correct"]) for s in samples],
                          "judge_invalid": [float(s["judge_invalid"]) for s in samples]})

    def compare(self, task: Task, items: list[dict], samples: list[dict], others: list[dict]) -> dict[str, dict]:
        """Pairwise verdicts (both orders) into each sample; returns win_rate of this run's model.

        others: the other model's samples for the same items, in the same order."""
        texts = []
        for s, o, item in zip(samples, others, items, strict=True):
            if (s["doc_id"], s["rotation"]) != (o["doc_id"], o["rotation"]):
                raise ValueError(f"{task.name}: the two models' answers are not for the same items")
            question, gold = question_and_gold(task, item)
            ours, theirs = ex.strip_think(s["answer"])[0].strip(), ex.strip_think(o["answer"])[0].strip()
            fill = dict(question=question, reference=gold or "(none)")
            texts.append(PAIRWISE_TEMPLATE.format(**fill, answer_a=ours, answer_b=theirs))
            texts.append(PAIRWISE_TEMPLATE.format(**fill, answer_a=theirs, answer_b=ours))
        replies = self.ask(texts, f"{task.title}: comparing")
        scores = []
        for i, (s, o) in enumerate(zip(samples, others, strict=True)):
            first, second = replies[2 * i], replies[2 * i + 1]
            verdicts = [parse_preference(first), parse_preference(second)]
            # Order 1 shows our answer as A, order 2 as B; an unreadable verdict counts as a tie.
            ours = [{"A": 1.0, "B": 0.0}.get(verdicts[0], 0.5), {"B": 1.0, "A": 0.0}.get(verdicts[1], 0.5)]
            score = sum(ours) / 2
            outcome = {1.0: "win", 0.0: "loss"}.get(score) or ("tie" if ours[0] == ours[1] else "inconsistent")
            invalid = None in verdicts
            s["judge_invalid"] = s.get("judge_invalid", False) or invalid
            s["pairwise"] = {"against_answer": o["answer"], "replies": [first, second],
                             "verdicts": [v or "" for v in verdicts], "score": score, "outcome": outcome,
                             "invalid": invalid}
            scores.append(score)
        return summarize({"win_rate": scores})
