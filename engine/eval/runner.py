"""Run an evaluation: tasks -> prompts -> a backend -> extracted answers -> scores with standard errors.

Work goes through a response cache (keyed by model identity, the exact prompt and the settings that change an
answer) in chunks, so a cancelled or killed run resumes where it stopped and a rerun with the same settings is
free. Each task's result carries per-item samples (prompt, answer, extracted, gold, correct, log-probs, program
outcome) for the sample browser. Groups (mmlu) are the item-weighted mean of their members, as in lm-eval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.eval import extract as ex
from engine.eval.backends import Backend, GenParams
from engine.eval.cache import CHUNK, MemoryCache, ResponseCache, cache_key
from engine.eval.config import EvalConfig
from engine.eval.metrics import choice_scores, pass_at_k, summarize
from engine.eval.prompts import Prompt, PromptSettings, build_prompt, choice_requests, shots_for
from engine.eval.task import LETTERS, ChoiceTask, Task, rotate
from engine.eval.tasks import expand, get_task
from engine.progress import Progress, check_cancel, no_progress

PROGRAM_TIMEOUT_S = 10.0  # wall clock per generated program in the sandbox


@dataclass
class TaskResult:
    task: str
    group: str
    licence: str
    metrics: dict[str, dict[str, float]]
    samples: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list, repr=False)
    """The item each generation sample answered (after any rotation), in the same order: what a judge reads."""
    source: Task | None = field(default=None, repr=False)
    """The task itself (how a judge shows its question and gold)."""


class _Rate:
    """Questions per second and ETA for the progress line."""

    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done, self.start = progress, max(1, total), 0, time.monotonic()

    def advance(self, n: int, label: str) -> None:
        self.done += n
        elapsed = max(1e-6, time.monotonic() - self.start)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0
        self.progress(fraction=min(1.0, self.done / self.total),
                      message=f"{label}: {self.done}/{self.total} questions, {rate:.2f}/s, ETA {eta:.0f}s",
                      metrics={"questions_per_s": rate})


class Evaluator:
    def __init__(self, cfg: EvalConfig, backend: Backend, cache: ResponseCache | None = None,
                 progress: Progress = no_progress, cancel: threading.Event | None = None):
        self.cfg, self.backend, self.cache = cfg, backend, cache or MemoryCache()
        self.progress, self.cancel = progress, cancel
        self.prompt_settings = PromptSettings(mode=cfg.mode, shots=cfg.shots, sampler=cfg.sampler, seed=cfg.seed,
                                              cot=cfg.cot, style=cfg.style)

    # ---- the run ----------------------------------------------------------------------------------------

    def run(self, on_task: Callable[[TaskResult], None] | None = None, only: set[str] | None = None) -> dict:
        """Every task of the config (or only those named), each handed to on_task as soon as it is scored."""
        pairs = [(g, n) for g, n in expand(self.cfg.tasks) if only is None or n in only]
        plans = [(group, get_task(name)) for group, name in pairs]
        total = sum(len(self._docs(task)) for _, task in plans)
        rate = _Rate(self.progress, total)
        results: list[TaskResult] = []
        for group, task in plans:
            check_cancel(self.cancel)
            result = self.run_task(task, group, rate)
            results.append(result)
            if on_task:
                on_task(result)
        return {"tasks": results, "groups": aggregate_groups(results)}

    def _docs(self, task: Task) -> list[dict]:
        docs = task.docs(task.check_split(self.cfg.split))
        return docs[: self.cfg.limit] if self.cfg.limit else docs

    def _render(self, prompt: Prompt) -> str:
        return self.backend.render_chat(prompt.messages) if prompt.messages else prompt.text

    def run_task(self, task: Task, group: str, rate: _Rate) -> TaskResult:
        docs = self._docs(task)
        if task.kind == "agent":  # agent benchmarks drive their own loop; they hand back samples and metrics
            samples, metrics = task.evaluate(self.backend, docs, progress=self.progress, cancel=self.cancel)
            rate.advance(len(docs), task.name)
            return TaskResult(task.name, group, task.licence, metrics, samples)
        pool = task.fewshot_pool(task.check_split(self.cfg.split))
        if isinstance(task, ChoiceTask) and self.cfg.mode == "ppl":
            samples, items = self._ppl(task, docs, pool, rate), []
        else:
            samples, items = self._gen(task, docs, pool, rate)
        return TaskResult(task.name, group, task.licence, score(samples, self.cfg.circular), samples, items, task)

    def _variants(self, task: Task, doc: dict) -> list[dict]:
        if self.cfg.circular and isinstance(task, ChoiceTask):
            return [rotate(doc, r) for r in range(len(doc["choices"]))]
        return [doc]

    # ---- PPL --------------------------------------------------------------------------------------------

    def _ppl(self, task: ChoiceTask, docs: list[dict], pool: list[dict], rate: _Rate) -> list[dict]:
        items = []
        for doc in docs:
            shots = shots_for(task, doc, pool, self.prompt_settings)
            for variant in self._variants(task, doc):
                reqs = [(self._render(p), cont) for p, cont in choice_requests(task, variant, shots,
                                                                               self.prompt_settings)]
                items.append((doc, variant, reqs))
        flat = [pair for _, _, reqs in items for pair in reqs]
        keys = [cache_key(self.backend.identity, "ll", ctx, cont) for ctx, cont in flat]
        answers = self._cached(keys, flat, self._score_chunk, rate, task, per_question=len(flat) / max(1, len(docs)))
        samples, i = [], 0
        for doc, variant, reqs in items:
            lls = [answers[keys[i + j]]["logprob"] for j in range(len(reqs))]
            i += len(reqs)
            choices = task.choice_continuations(variant)
            scores = choice_scores(lls, choices, variant["gold"])
            pred = max(range(len(lls)), key=lambda j: lls[j])
            samples.append({"doc_id": str(doc.get("id", "")), "rotation": variant.get("rotation", 0),
                            "prompt": reqs[variant["gold"]][0], "answer": variant["choices"][pred],
                            "extracted": LETTERS[pred], "gold": LETTERS[variant["gold"]],
                            "correct": bool(scores["acc"]), "scores": scores, "logprobs": lls})
        return samples

    def _score_chunk(self, pairs: list[tuple[str, str]]) -> list[dict]:
        return [{"logprob": lp, "greedy": g} for lp, g in self.backend.loglikelihood(pairs, cancel=self.cancel)]

    def _cached(self, keys, payloads, compute, rate: _Rate, task: Task, per_question: float) -> dict[str, dict]:
        """Answers for keys: from the cache, else computed in chunks and stored at once (the resume point)."""
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        todo = [(k, p) for k, p in zip(keys, payloads, strict=True) if k not in found]
        rate.advance(round((len(keys) - len(todo)) / max(per_question, 1e-9)), task.name)
        size = CHUNK * getattr(self.backend, "workers", 1)  # each data-parallel worker gets a full chunk
        for first in range(0, len(todo), size):
            check_cancel(self.cancel)
            chunk = todo[first:first + size]
            values = dict(zip([k for k, _ in chunk], compute([p for _, p in chunk]), strict=True))
            self.cache.put_many(values)
            found.update(values)
            rate.advance(round(len(chunk) / max(per_question, 1e-9)), task.name)
        return found

    # ---- generation -------------------------------------------------------------------------------------

    def _gen_params(self, task: Task) -> GenParams:
        stop = task.stop if hasattr(task, "stop") else ("\n\n", "Question:")
        default = getattr(task, "max_tokens", 32 if isinstance(task, ChoiceTask) else 256)
        return GenParams(max_tokens=self.cfg.max_tokens or default, stop=tuple(stop),
                         temperature=self.cfg.temperature, n=self.cfg.samples, seed=self.cfg.seed)

    def _gen(self, task: Task, docs: list[dict], pool: list[dict], rate: _Rate) -> tuple[list[dict], list[dict]]:
        params = self._gen_params(task)
        items = []
        for doc in docs:
            shots = shots_for(task, doc, pool, self.prompt_settings)
            for variant in self._variants(task, doc):
                items.append((doc, variant, self._render(build_prompt(task, variant, shots, self.prompt_settings))))
        keys = [cache_key(self.backend.identity, "gen", prompt, vars(params)) for _, _, prompt in items]
        compute = lambda prompts: [{"texts": t} for t in self.backend.generate(prompts, params, cancel=self.cancel)]
        answers = self._cached(keys, [p for _, _, p in items], compute, rate, task,
                               per_question=len(items) / max(1, len(docs)))
        program_outcomes = self._run_programs(task, items, [answers[k]["texts"] for k in keys])
        samples = [self._check(task, doc, variant, prompt, answers[key]["texts"], program_outcomes)
                   for (doc, variant, prompt), key in zip(items, keys, strict=True)]
        return samples, [variant for _, variant, _ in items]

    def _run_programs(self, task: Task, items: list, texts: list[list[str]]) -> dict[str, dict]:
        """Code tasks: every distinct program run in the sandbox, several at once."""
        if task.kind != "code":
            return {}
        from engine.eval.execution import run_many

        programs = list(dict.fromkeys(task.program(doc, ex.extract_code(ex.strip_think(text)[0]))
                                      for (doc, _, _), answers in zip(items, texts, strict=True) for text in answers))
        self.progress(message=f"{task.name}: running {len(programs)} programs in the sandbox")
        results = run_many(programs, timeout_s=PROGRAM_TIMEOUT_S, cancel=self.cancel)
        check_cancel(self.cancel)
        return {p: {"outcome": r.status, "message": r.message, "stdout": r.outcome.stdout[-2000:],
                    "stderr": r.outcome.stderr[-2000:]} for p, r in zip(programs, results, strict=True)}

    def _check(self, task: Task, doc: dict, variant: dict, prompt: str, texts: list[str],
               program_outcomes: dict[str, dict]) -> dict:
        """Rule-based checking of one item's answers (extract, compare with gold, or the sandbox's outcome)."""
        outcomes = []
        for text in texts:
            answer, think_len = ex.strip_think(text)
            if isinstance(task, ChoiceTask):
                extracted = ex.extract_letter(answer, len(variant["choices"]))
                gold = task.gold_letter(variant)
                correct = extracted == gold
                outcomes.append({"answer": text, "extracted": extracted, "correct": correct, "think_len": think_len})
            elif task.kind == "code":
                extracted = ex.extract_code(answer)
                program = task.program(doc, extracted)
                outcome = program_outcomes[program]
                outcomes.append({"answer": text, "extracted": extracted, "correct": outcome["outcome"] == "pass",
                                 "think_len": think_len, "program": program, **outcome})
            else:
                extracted = ex.extract(task.extractor, answer)
                outcomes.append({"answer": text, "extracted": extracted, "think_len": think_len,
                                 "correct": ex.is_correct(task.extractor, extracted, doc["answer"])})
        first = outcomes[0]
        gold = task.gold_letter(variant) if isinstance(task, ChoiceTask) else str(doc.get("answer", ""))
        sample = {"doc_id": str(doc.get("id", "")), "rotation": variant.get("rotation", 0), "prompt": prompt,
                  **first, "gold": gold, "n_correct": sum(o["correct"] for o in outcomes), "n": len(outcomes)}
        if len(outcomes) > 1:
            sample["outcomes"] = outcomes
        return sample


def score(samples: list[dict], circular: bool) -> dict[str, dict[str, float]]:
    """Per-task metrics from per-item samples."""
    if not samples:
        return {}
    per_item: dict[str, list[float]] = {}
    if circular:
        by_doc: dict[str, list[dict]] = {}
        for s in samples:
            by_doc.setdefault(s["doc_id"], []).append(s)
        per_item["acc_origin"] = [float(next(s for s in group if s["rotation"] == 0)["correct"])
                                  for group in by_doc.values()]
        per_item["perf_circular"] = [float(all(s["correct"] for s in group)) for group in by_doc.values()]
        return summarize(per_item)
    if "scores" in samples[0]:
        for name in samples[0]["scores"]:
            per_item[name] = [s["scores"][name] for s in samples]
        return summarize(per_item)
    n = samples[0]["n"]
    if n == 1:
        per_item["exact_match"] = [float(s["correct"]) for s in samples]
        if "outcome" in samples[0]:
            per_item = {"pass@1": per_item["exact_match"]}
        return summarize(per_item)
    for k in sorted({1, n} | ({10} if n >= 10 else set())):
        per_item[f"pass@{k}"] = [pass_at_k(s["n"], s["n_correct"], k) for s in samples]
    return summarize(per_item)


def aggregate_groups(results: list[TaskResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Groups with several members (mmlu): each metric's item-weighted mean; stderr pooled the same way."""
    groups: dict[str, list[TaskResult]] = {}
    for r in results:
        if r.group != r.task:
            groups.setdefault(r.group, []).append(r)
    out = {}
    for group, members in groups.items():
        metrics = {}
        for name in members[0].metrics:
            rows = [m.metrics[name] for m in members if name in m.metrics]
            n = sum(r["n"] for r in rows)
            value = sum(r["value"] * r["n"] for r in rows) / n
            variance = sum((r["stderr"] ** 2 if r["stderr"] == r["stderr"] else 0) * r["n"] ** 2 for r in rows)
            metrics[name] = {"value": value, "stderr": variance ** 0.5 / n, "n": n}
        out[group] = metrics
    return out


def results_json(run: dict, cfg: EvalConfig) -> dict:
    """The `--output` document: {"results": {task: {metric: value, metric_stderr: …}}, "settings": …}."""
    results = {}
    for r in run["tasks"]:
        results[r.task] = _flat(r.metrics)
    for group, metrics in run["groups"].items():
        results[group] = _flat(metrics)
    settings = {**cfg.settings(), "model": cfg.model, "tasks": cfg.tasks, "settings_hash": cfg.settings_hash()}
    if run.get("judge"):  # who judged, with the exact prompts it was given
        settings["judge_protocol"] = run["judge"]
    return {"results": results, "settings": settings}


def _flat(metrics: dict) -> dict:
    out = {}
    for name, m in metrics.items():
        out[name] = m["value"]
        out[f"{name}_stderr"] = m["stderr"]
    return out
