"""Agent benchmarks as tasks of the evaluation stage: BFCL v4 categories, GSM8K with the Python tool, ToolTalk.

They are not prompts scored by an extractor: each item runs the model through a function-calling exchange (one
turn for BFCL, the agent loop with a sandboxed Python tool for GSM8K, whole conversations for ToolTalk), so the
runner hands them its backend and they drive it themselves (`kind == "agent"`). The evaluation backend becomes a
ModelClient: our engine in this process (an EngineBackend's LLMEngine, with the server's chat template and
tool-call parsing) or the same URL the backend talks to. Results come back in the runner's shape — per-item
samples and {metric: {value, stderr, n}} — so they are stored, compared and browsed like every other task.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import json
import tempfile
import threading
from dataclasses import dataclass

from engine.agents.bench import bfcl, gsm8k_tool, tooltalk
from engine.agents.loops.base import AgentConfig
from engine.agents.model import LocalEngineClient, ModelClient, OpenAIClient
from engine.agents.toolbox import Cancelled as AgentCancelled
from engine.eval.metrics import summarize
from engine.eval.sources import oe_eval_docs
from engine.eval.task import Task
from engine.progress import Cancelled, Progress, no_progress

TRACE_LIMIT = 20_000
"""A sample keeps its trace only when the trace's JSON is at most this many characters."""


def client_for(backend) -> ModelClient:
    """The evaluation backend as an agent's model: its engine in this process, or the URL it talks to."""
    engine = getattr(backend, "engine", None)
    if engine is not None:
        return LocalEngineClient(engine, name=getattr(backend, "identity", "local"))
    client, model = getattr(backend, "client", None), getattr(backend, "model", None)
    if client is not None and model:
        return OpenAIClient(str(client.base_url), model, api_key=client.api_key or "none")
    raise ValueError("tasks: agent benchmarks need the model in this process (workers 1) or a model server URL; "
                     f"this backend ({type(backend).__name__}) offers neither")


def _reporter(progress: Progress):
    return lambda fraction, message: progress(message=message)


def _small(trace) -> dict:
    return {"trace": trace} if len(json.dumps(trace, ensure_ascii=False, default=str)) <= TRACE_LIMIT else {}


def _as_metrics(per_item: dict[str, list[float]], empty: dict[str, float] | None = None) -> dict:
    scored = summarize({k: v for k, v in per_item.items() if v})
    # A metric with nothing to average (no call made) takes the benchmark's own convention, with no error bar.
    blank = lambda name: {"value": (empty or {}).get(name, 0.0), "stderr": float("nan"), "n": 0}
    return {name: scored[name] if values else blank(name) for name, values in per_item.items()}


@dataclass
class AgentTask(Task, abc.ABC):
    kind: str = "agent"
    max_tokens: int = 256
    """Most tokens the model may write in one turn."""
    max_steps: int = 4
    """Most model turns per item (per assistant turn, for ToolTalk)."""

    def evaluate(self, backend, docs: list[dict], progress: Progress = no_progress,
                 cancel: threading.Event | None = None) -> tuple[list[dict], dict]:
        try:
            return self._evaluate(client_for(backend), docs, progress, cancel)
        except AgentCancelled:
            raise Cancelled("cancelled") from None

    @abc.abstractmethod
    def _evaluate(self, client: ModelClient, docs: list[dict], progress: Progress,
                  cancel: threading.Event | None) -> tuple[list[dict], dict]:
        """(samples, metrics) of the items, run on the client."""


@functools.cache
def _bfcl_docs(category: str) -> tuple[dict, ...]:
    return tuple({**dataclasses.asdict(item), "question": item.messages[-1]["content"]} for item in bfcl.load(category))


@dataclass
class BfclTask(AgentTask):
    category: str = "simple_python"
    """BFCL v4 category (bfcl.CATEGORIES)."""

    def docs(self, split: str) -> list[dict]:
        return list(_bfcl_docs(self.category))

    def _evaluate(self, client, docs, progress, cancel):
        items = [bfcl.Item(d["id"], d["messages"], d["functions"], d["answers"]) for d in docs]
        result = bfcl.evaluate(client, self.category, max_tokens=self.max_tokens, progress=_reporter(progress),
                               items=items, cancel=cancel)
        samples = []
        for doc, outcome in zip(docs, result.outcomes, strict=True):
            calls = [{"name": name, "arguments": arguments} for name, arguments in outcome["calls"]]
            samples.append({
                "doc_id": doc["id"], "prompt": doc["question"],
                "answer": json.dumps(calls, ensure_ascii=False) if calls else outcome["content"],
                "extracted": json.dumps(calls, ensure_ascii=False),
                "gold": json.dumps(doc["answers"], ensure_ascii=False),
                "correct": bool(outcome["correct"]), **_small({"why": outcome["why"]}),
            })
        return samples, _as_metrics({"accuracy": [float(o["correct"]) for o in result.outcomes]})


@functools.cache
def _gsm8k_docs() -> tuple[dict, ...]:
    docs = oe_eval_docs("gsm8k", "gold_bpb_5shot", key="id")  # the test set as the gsm8k task reads it
    return tuple({"id": str(d["id"]), "question": d["question"], "answer": d["short_answer"]} for d in docs)


@dataclass
class Gsm8kToolTask(AgentTask):
    def docs(self, split: str) -> list[dict]:
        return list(_gsm8k_docs())

    def _evaluate(self, client, docs, progress, cancel):
        # The sandbox's only writable place: a fresh temporary folder, gone after the run.
        with tempfile.TemporaryDirectory(prefix="inkstone-gsm8k-tool-") as workspace:
            scores = gsm8k_tool.evaluate(client, workspace, docs, max_steps=self.max_steps,
                                         progress=_reporter(progress), cancel=cancel)
        samples = []
        for doc, run in zip(docs, scores.runs, strict=True):
            number = gsm8k_tool.last_number(run["answer"] or "")
            samples.append({
                "doc_id": doc["id"], "prompt": doc["question"], "answer": run["answer"] or "",
                "extracted": "" if number is None else f"{number:g}", "gold": doc["answer"],
                "correct": bool(run["correct"]), **_small({"status": run["status"], "calls": run["calls"]}),
            })
        per_item = {
            "answer_accuracy": [float(r["correct"]) for r in scores.runs],
            "action_rate": [float(r["acted"]) for r in scores.runs],
            "code_accuracy": [float(r["clean_code"]) for r in scores.runs if r["acted"]],
            "follow_rate": [float(r["status"] == "answered") for r in scores.runs],
        }
        return samples, _as_metrics(per_item)


@functools.cache
def _tooltalk_docs(split: str) -> tuple[dict, ...]:
    def first_user_turn(conversation: dict) -> str:
        return next((t["text"] for t in conversation["conversation"] if t["role"] == "user"), "")

    return tuple({**c, "id": c["name"], "question": first_user_turn(c)} for c in tooltalk.load(split))


@dataclass
class ToolTalkTask(AgentTask):
    subset: str = "easy"
    """ToolTalk's split: easy (28 conversations) or tooltalk (the 50 hard ones)."""
    api_mode: str = "all"
    """Docs offered per conversation, as ToolTalk's --api_mode (its default: all 28 APIs)."""

    def docs(self, split: str) -> list[dict]:
        return list(_tooltalk_docs(self.subset))

    def _evaluate(self, client, docs, progress, cancel):
        config = AgentConfig(max_steps=self.max_steps, max_tokens=self.max_tokens)
        results = tooltalk.evaluate(client, docs, api_mode=self.api_mode, config=config,
                                    progress=_reporter(progress), cancel=cancel)
        samples = []
        for doc, result in zip(docs, results, strict=True):
            calls = [{"turn": p.turn, "api": p.api, "parameters": p.parameters, "match": p.match,
                      "bad_action": p.bad_action} for p in result.predictions]
            truths = [{"turn": t["turn"], "api": t["api"], "parameters": t["parameters"]} for t in result.truths]
            users = [t["text"] for t in doc["conversation"] if t["role"] == "user"]
            replies = "\n".join(f"[turn {r['turn']}] {r['text'] or '(' + r['status'] + ')'}" for r in result.replies)
            answer = replies + ("\ncalls: " + json.dumps(calls, ensure_ascii=False) if calls else "")
            samples.append({
                "doc_id": doc["id"], "prompt": "\n".join(users), "answer": answer,
                "extracted": ", ".join(c["api"] for c in calls), "gold": json.dumps(truths, ensure_ascii=False),
                "correct": result.success, **_small({"replies": result.replies, "counts": result.counts()}),
            })
        return samples, _as_metrics(tooltalk.per_unit(results), tooltalk.EMPTY_VALUES)


_BFCL_TITLES = {"simple_python": "simple", "multiple": "multiple", "parallel": "parallel",
                "parallel_multiple": "parallel multiple", "irrelevance": "irrelevance"}

TASKS: list[Task] = [
    *[BfclTask(name="bfcl_" + ("simple" if c == "simple_python" else c), title=f"BFCL v4 {_BFCL_TITLES[c]}",
               licence=bfcl.LICENCE, category=c) for c in bfcl.CATEGORIES],
    Gsm8kToolTask(name="gsm8k_tool", title="GSM8K with Python (agent)", licence=gsm8k_tool.LICENCE, max_steps=4),
    ToolTalkTask(name="tooltalk_easy", title="ToolTalk easy", licence=tooltalk.LICENCE, max_steps=4),
]
