"""The LLM judge on hand-made cases with known verdicts: OpenAI-compatible servers on loopback (written here, their
replies a pure function of the prompt) stand in for the evaluated model, the model compared against and the judge,
and our real OpenAI client code talks to them. A/B grading, pairwise in both orders (a position-biased judge gives
0.5), garbage and empty judge replies, a judge that is unreachable (the answers survive: stored and cached, and the
rerun only judges), the response cache, validation and CLI flags, and the eval job end to end on the bundled model.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.eval.config import EvalConfig
from engine.eval.judge import JudgeUnavailable, parse_grade, parse_preference
from engine.eval.judged_run import evaluate
from engine.eval.openai_backend import OpenAIBackend
from engine.eval.runner import MemoryCache, results_json

# ---- loopback OpenAI-compatible servers ----------------------------------------------------------------------


class FakeServer:
    """/v1/models, /v1/completions and /v1/chat/completions answering `reply(prompt_text)`; counts requests."""

    def __init__(self, name: str, reply, api_key: str = "", port: int = 0):
        self.name, self.reply, self.api_key, self.prompts = name, reply, api_key, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "bad key", "type": "auth"}})
                    return False
                return True

            def do_GET(self):
                if self._authorized():
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model", "created": 0,
                                                                  "owned_by": "test"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorized():
                    return
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                server.prompts.append(prompt)
                text = server.reply(prompt)
                choice = {"index": 0, "finish_reason": "stop", "logprobs": None}
                choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
                self._send(200, {"id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0,
                                 "model": server.name, "choices": [choice],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _between(text: str, begin: str, end: str) -> str:
    m = re.search(re.escape(begin) + r"\s*(.*?)\s*" + re.escape(end), text, re.S)
    return m.group(1) if m else ""


def fair_judge(prompt: str) -> str:
    """A/B: correct when the gold text occurs in the prediction (Chinese items get Chinese words); pairwise: the
    answer holding the reference wins, both or neither is a tie; a question marked BIASED always gets 'A'."""
    if "<Gold Target Begin>" in prompt:
        gold = _between(prompt, "<Gold Target Begin>:", "<Gold Target End>")
        prediction = _between(prompt, "<Predicted Answer Begin>:", "<Predicted End>")
        right = gold.lower() in prediction.lower()
        if re.search(r"[\u4e00-\u9fff]", gold):
            return "正确" if right else "错误"
        return "<think>Is it B? Let me check.</think>\nA" if right else "**B**"
    question = _between(prompt, "<Question Begin>:", "<Question End>")
    if "BIASED" in question:
        return "A"
    reference = _between(prompt, "<Reference Answer Begin>:", "<Reference Answer End>").lower()
    a = reference in _between(prompt, "<Answer A Begin>:", "<Answer A End>").lower()
    b = reference in _between(prompt, "<Answer B Begin>:", "<Answer B End>").lower()
    return "Answer A is better: A" if a and not b else "B" if b and not a else "C"


ITEMS = [  # question, gold, the model's answer, the other model's answer
    ("What is the capital of France?", "Paris", "The capital is Paris.", "Lyon"),
    ("What is 2+2?", "4", "It is 5", "4"),
    ("天空是什么颜色？", "蓝色", "蓝色的", "天空是蓝色"),
    ("Name a primary colour. BIASED", "red", "red", "blue"),
    ("Which is the largest planet?", "Jupiter", "Jupiter", "Saturn"),
]
# A/B: gold in the answer for items 1, 3, 4, 5 -> 0.8. Pairwise: win, loss, tie, inconsistent (position bias), win.
EXPECTED_OUTCOMES = ["win", "loss", "tie", "inconsistent", "win"]


def model_replying(column: int):
    answers = {row[0]: row[column] for row in ITEMS}

    def reply(prompt: str) -> str:
        return next(a for q, a in answers.items() if q in prompt)

    return reply


@pytest.fixture
def servers():
    started = {"model": FakeServer("model-one", model_replying(2)), "other": FakeServer("model-two", model_replying(3)),
               "judge": FakeServer("judge-llm", fair_judge)}
    yield started
    for s in started.values():
        s.stop()


@pytest.fixture
def open_set(tmp_path):
    path = tmp_path / "open.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": g}, ensure_ascii=False) + "\n"
                            for q, g, *_ in ITEMS), encoding="utf-8")
    return path


def opener(calls: list | None = None):
    def open_backend(ref: str, role: str):
        if calls is not None:
            calls.append((ref, role))
        return OpenAIBackend(ref, max_retries=0)

    return open_backend


def config(servers, open_set, **over) -> EvalConfig:
    cfg = EvalConfig(model=servers["model"].url, tasks=str(open_set), mode="gen", judge=servers["judge"].url, **over)
    cfg.validate()
    return cfg


# ---- verdict parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, grade", [
    ("A", "A"), ("B", "B"), ("**B**", "B"), ("Answer: B", "B"), ("A: CORRECT", "A"), ("The grade is B.", "B"),
    ("答案：Ｂ", "B"), ("选A", "A"), ("<think>A or B? The gold is 4.</think>\nB", "B"), ("CORRECT", "A"),
    ("INCORRECT", "B"), ("正确", "A"), ("不正确", "B"), ("错误", "B"), ("", None), ("I cannot judge this.", None),
    ("Awesome, Bob!", None), (None, None),
])
def test_grade_parsing_takes_the_first_stand_alone_letter(reply, grade):
    assert parse_grade(reply) == grade


@pytest.mark.parametrize("reply, preference", [
    ("A", "A"), ("[[B]]", "B"), ("C", "C"), ("Both are equal: C", "C"), ("Ｂ", "B"), ("", None), ("Dunno", None),
])
def test_preference_parsing(reply, preference):
    assert parse_preference(reply) == preference


# ---- grading and comparing -------------------------------------------------------------------------------------


def test_ab_grading_and_pairwise_win_rate_on_known_cases(servers, open_set):
    cfg = config(servers, open_set, against=servers["other"].url)
    seen, calls, records = [], [], []
    outcome = evaluate(cfg, opener(calls), MemoryCache(), on_task=lambda r: seen.append(
        [dict(s) for s in r.samples]), on_judge=records.append)
    [result] = outcome["tasks"]
    # one model in memory at a time: the model, then the other, then the judge
    assert [role for _, role in calls] == ["model", "against", "judge"]
    assert result.metrics["judge_accuracy"]["value"] == pytest.approx(0.8)
    assert result.metrics["judge_invalid"]["value"] == 0.0
    assert result.metrics["win_rate"]["value"] == pytest.approx((1 + 0 + 0.5 + 0.5 + 1) / 5)
    assert result.metrics["exact_match"]["value"] == pytest.approx(0.4)  # the rule check is kept beside it
    assert [s["pairwise"]["outcome"] for s in result.samples] == EXPECTED_OUTCOMES
    assert [s["correct"] for s in result.samples] == [True, False, True, True, True]
    assert result.samples[1]["judge"] == {"verdict": "B", "reply": "**B**", "invalid": False}
    assert result.samples[2]["judge"]["reply"] == "正确"
    assert result.samples[3]["pairwise"]["verdicts"] == ["A", "A"]  # the same letter in both orders: inconsistent
    assert result.samples[0]["pairwise"]["against_answer"] == "Lyon"
    # answers were handed over before any verdict existed, then again with the verdicts
    assert len(seen) == 2 and "judge" not in seen[0][0] and "judge" in seen[1][0]
    # the judge saw each answer once for A/B and twice (both orders) for pairwise; the record names it
    assert len(servers["judge"].prompts) == 5 + 10
    shown = {(_between(p, "<Answer A Begin>:", "<Answer A End>"), _between(p, "<Answer B Begin>:", "<Answer B End>"))
             for p in servers["judge"].prompts if "France" in p and "<Answer A Begin>" in p}
    assert shown == {("The capital is Paris.", "Lyon"), ("Lyon", "The capital is Paris.")}
    [record] = records
    assert record["judge"] == servers["judge"].url and record["against"] == servers["other"].url
    assert "judge-llm" in record["judge_identity"] and "model-two" in record["against_identity"]
    assert "A: CORRECT" in record["grader_template"] and "B: INCORRECT" in record["grader_template"]
    doc = results_json(outcome, cfg)
    assert doc["results"][str(open_set)]["win_rate"] == pytest.approx(0.6)
    assert doc["settings"]["judge"] == servers["judge"].url and doc["settings"]["judge_protocol"] == record


def test_a_custom_chat_set_is_judged_on_its_conversation(servers, tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": q},
                          {"role": "assistant", "content": gold}]} for q, gold, *_ in ITEMS[:3]]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = EvalConfig(model=servers["model"].url, tasks=str(path), mode="gen", style="chat", judge=servers["judge"].url)
    cfg.validate()
    [result] = evaluate(cfg, opener(), MemoryCache())["tasks"]
    assert [s["correct"] for s in result.samples] == [True, False, True]
    assert result.metrics["judge_accuracy"]["value"] == pytest.approx(2 / 3)
    graded = [p for p in servers["judge"].prompts if "France" in p]
    assert len(graded) == 1 and "[system] Answer briefly.\n[user] What is the capital of France?" in graded[0]


def test_rerun_takes_every_answer_and_verdict_from_the_cache(servers, open_set):
    cfg, cache = config(servers, open_set, against=servers["other"].url), MemoryCache()
    first = evaluate(cfg, opener(), cache)["tasks"][0].metrics
    counts = {name: len(s.prompts) for name, s in servers.items()}
    again = evaluate(cfg, opener(), cache)["tasks"][0].metrics
    assert again == first
    assert {name: len(s.prompts) for name, s in servers.items()} == counts


def test_garbage_and_empty_judge_replies_count_incorrect_and_are_flagged(servers, open_set):
    servers["judge"].reply = lambda prompt: "" if "2+2" in prompt or "largest" in prompt else "¯\\_(ツ)_/¯ hmm, well"
    cfg = config(servers, open_set, against=servers["other"].url)
    [result] = evaluate(cfg, opener(), MemoryCache())["tasks"]
    assert result.metrics["judge_accuracy"]["value"] == 0.0
    assert result.metrics["judge_invalid"]["value"] == 1.0
    assert result.metrics["win_rate"]["value"] == 0.5  # no readable preference: every order a tie
    for s in result.samples:
        assert s["judge_invalid"] and s["judge"]["invalid"] and s["judge"]["verdict"] == "" and not s["correct"]
        assert s["pairwise"]["invalid"] and s["pairwise"]["outcome"] == "tie"


def test_an_unreachable_judge_fails_clearly_and_keeps_the_answers(servers, open_set):
    dead = FakeServer("nobody", fair_judge)
    dead.stop()  # its port is closed now
    cfg, cache, stored = config(servers, open_set), MemoryCache(), []
    cfg.judge = dead.url
    with pytest.raises(JudgeUnavailable, match=re.escape(dead.url)) as err:
        evaluate(cfg, opener(), cache, on_task=stored.append)
    assert "answers are stored" in str(err.value)
    [task] = stored
    assert [s["answer"] for s in task.samples] == [row[2] for row in ITEMS]
    assert len(cache.data) == len(ITEMS)  # the model's answers, cached
    asked = len(servers["model"].prompts)
    cfg.judge = servers["judge"].url  # the judge is up again: only the judging is left
    [result] = evaluate(cfg, opener(), cache)["tasks"]
    assert len(servers["model"].prompts) == asked
    assert result.metrics["judge_accuracy"]["value"] == pytest.approx(0.8)


def test_a_judge_that_dies_mid_run_is_named_in_the_error(servers, open_set):
    def opening(ref, role):
        backend = OpenAIBackend(ref, max_retries=0)
        if role == "judge":
            servers["judge"].stop()  # reachable when listed, gone when asked
        return backend

    with pytest.raises(JudgeUnavailable, match=re.escape(servers["judge"].url)):
        evaluate(config(servers, open_set), opening, MemoryCache())


# ---- arguments -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"against": "other-model"}, "against: needs a judge"),
    ({"judge_tasks": "all"}, "judge_tasks: needs a judge"),
    ({"judge": "J", "against": "M"}, "against: must name another model"),
    ({"judge": "J", "samples": 2, "temperature": 0.7}, "samples: the judge grades one answer"),
    ({"judge": "J", "tasks": "arc_easy", "judge_tasks": ""}, "judge: none of the tasks has open answers"),
    ({"judge": "J", "tasks": "gsm8k", "judge_tasks": "arc_easy"}, "judge_tasks: arc_easy not among the tasks"),
])
def test_judge_arguments_are_checked_with_clear_messages(fields, message):
    cfg = EvalConfig(**{"model": "M", "mode": "gen", "tasks": "gsm8k", "judge_tasks": "gsm8k"} | fields)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_named_and_all_generation_tasks_can_be_judged_and_the_settings_hash_moves_with_the_judge(open_set):
    from engine.eval.judge import is_judged
    from engine.eval.tasks import get_task

    EvalConfig(model="M", mode="gen", tasks="gsm8k", judge="J", judge_tasks="gsm8k").validate()
    EvalConfig(model="M", mode="gen", tasks="gsm8k,arc_easy", judge="J", judge_tasks="all").validate()
    cfg = EvalConfig(model="M", mode="gen", tasks=f"{open_set},humaneval", judge="J", judge_tasks="all")
    assert is_judged(get_task("arc_easy"), cfg) and not is_judged(get_task("humaneval"), cfg)  # code is run
    assert not is_judged(get_task("arc_easy"), EvalConfig(mode="ppl", judge="J", judge_tasks="all"))
    plain = EvalConfig(model="M", tasks=str(open_set))
    assert "judge" not in plain.settings()  # runs without a judge keep the hash they always had
    judged = EvalConfig(model="M", tasks=str(open_set), judge="J")
    assert judged.settings()["judge"] == "J" and judged.settings_hash() != plain.settings_hash()
    off = open_set.with_name(open_set.name + ".eval.json")
    off.write_text('{"judge": false}')
    assert not is_judged(get_task(str(open_set)), judged)
    off.write_text('{"judge": "yes"}')
    with pytest.raises(ValueError, match=r"open.jsonl.eval.json: field 'judge' must be true or false"):
        get_task(str(open_set))


def test_the_cli_has_judge_and_against_flags_from_the_config():
    from cli import build_parser

    args = build_parser().parse_args(["eval", "my-model", "--tasks", "set.jsonl", "--judge", "http://h:1/v1",
                                      "--against", "base-model", "--judge-tasks", "all"])
    assert (args.judge, args.against, args.judge_tasks) == ("http://h:1/v1", "base-model", "all")
    help_text = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert "--judge JUDGE" in help_text and "win_rate" in " ".join(help_text.split())


# ---- the eval job, end to end ----------------------------------------------------------------------------------


def test_eval_job_keeps_the_answers_when_the_judge_is_down_and_judges_them_on_retry(home, bundled_model_dir,
                                                                                    tmp_path, monkeypatch):
    """The bundled model answers a custom open set on our engine; the judge (a key-checking loopback server) is
    down on the first run, which fails naming it and keeps the stored answers; the retry judges the same answers."""
    from sqlmodel import func, select

    from app import evals
    from app.db import session
    from app.tables import EvalCacheEntry
    from jobs.api import submit
    from jobs.context import JobContext
    from jobs.kinds import get_kind
    from jobs.tasks.eval import JUDGE_KEY_ENV, run

    items = [("What is the capital of France?", "Paris"), ("What colour is the sky on a clear day?", "blue"),
             ("2+2=?", "4")]
    data = tmp_path / "quiz.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items))
    data.with_name("quiz.jsonl.eval.json").write_text('{"max_tokens": 12}')
    down = FakeServer("judge-llm", fair_judge, api_key="sk-judge")
    port = down.httpd.server_address[1]
    down.stop()
    monkeypatch.setenv(JUDGE_KEY_ENV, "sk-judge")
    out = tmp_path / "results.json"
    params = dict(model=str(bundled_model_dir), tasks=str(data), mode="gen", style="chat", dtype="float32",
                  device="cpu", judge=down.url, output=str(out))
    job = submit(home, "eval", params, enqueue=False)
    ctx = JobContext(job.id, home, tmp_path / "work", lambda *a, **k: None, threading.Event())
    args = get_kind("eval").parse_args(params)

    with pytest.raises(JudgeUnavailable, match=re.escape(down.url)):
        run(args, ctx)
    [failed] = evals.list_runs(home)
    assert failed.status == "failed"
    assert "A: CORRECT" in failed.settings["judge_protocol"]["grader_template"]
    kept = evals.samples(home, failed.id)
    answers = [s.answer for s in kept]
    assert len(answers) == 3 and not any("judge" in s.detail for s in kept)  # answers, no verdicts yet
    with session(home) as s:
        cached = s.exec(select(func.count()).select_from(EvalCacheEntry)).one()
    assert cached == 3  # the model's answers, one per question

    judge = FakeServer("judge-llm", fair_judge, api_key="sk-judge", port=port)  # the judge is back
    try:
        result = run(args, ctx)
    finally:
        judge.stop()
    [done] = evals.list_runs(home)
    assert done.id == failed.id and done.status == "done"
    stored = evals.samples(home, done.id)
    assert [s.answer for s in stored] == answers  # the same answers, from the cache
    expected = [gold.lower() in answer.lower() for (_, gold), answer in zip(items, answers, strict=True)]
    assert [s.correct for s in stored] == expected
    assert [s.detail["judge"]["verdict"] for s in stored] == ["A" if e else "B" for e in expected]
    assert all("rule_correct" in s.detail and s.detail["judge_invalid"] is False for s in stored)
    assert len(judge.prompts) == 3
    with session(home) as s:
        assert s.exec(select(func.count()).select_from(EvalCacheEntry)).one() == 3 + 3  # + the judge's replies
    metrics = {r.metric: r.value for r in evals.results(home, [done.id])}
    assert metrics["judge_accuracy"] == pytest.approx(sum(expected) / 3) and "exact_match" in metrics
    assert result["results"][str(data)]["judge_accuracy"] == pytest.approx(sum(expected) / 3)
    doc = json.loads(out.read_text())
    assert doc["settings"]["judge"] == down.url and "judge-llm" in doc["settings"]["judge_protocol"]["judge_identity"]
    assert "judge-llm" in evals.get_run(home, done.id).settings["judge_protocol"]["judge_identity"]


def test_a_model_folder_judges_on_our_engine_and_its_unreadable_replies_are_flagged(servers, open_set, home,
                                                                                   tiny_model_dir, monkeypatch):
    """A random-weight model as judge, loaded by the job's own opener: whatever it writes, every verdict is the
    parse of its reply, unreadable ones count incorrect and flagged, and nothing crashes."""
    from engine.eval import judge
    from engine.eval.backends import GenParams
    from jobs.tasks.eval import _backend_opener

    monkeypatch.setattr(judge, "JUDGE_PARAMS", GenParams(max_tokens=24))  # random weights never stop early

    cfg = config(servers, open_set)
    cfg.judge, cfg.device, cfg.dtype = str(tiny_model_dir("llama")), "cpu", "float32"
    [result] = evaluate(cfg, _backend_opener(home, cfg), MemoryCache())["tasks"]
    for s in result.samples:
        verdict = parse_grade(s["judge"]["reply"])
        assert s["judge"]["verdict"] == (verdict or "") and s["judge_invalid"] == (verdict is None)
        assert s["correct"] == (verdict == "A")
    assert result.metrics["judge_accuracy"]["value"] == pytest.approx(sum(s["correct"] for s in result.samples) / 5)


def test_inkstone_eval_judges_and_compares_from_the_command_line(servers, open_set, home, tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO, child_env

    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "cli", "eval", servers["model"].url, "--tasks", str(open_set), "--mode", "gen",
           "--judge", servers["judge"].url, "--against", servers["other"].url, "--output", str(out)]
    r = subprocess.run(cmd, cwd=REPO, env=child_env(home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    scores = doc["results"][str(open_set)]
    assert scores["judge_accuracy"] == pytest.approx(0.8) and scores["win_rate"] == pytest.approx(0.6)
    assert doc["settings"]["against"] == servers["other"].url
    assert "model-two" in doc["settings"]["judge_protocol"]["against_identity"]
    bad = subprocess.run(cmd[:5] + ["--against", servers["other"].url], cwd=REPO, env=child_env(home),
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "against: needs a judge" in bad.stdout + bad.stderr
