"""Evaluation rows in a real SQLite file: the v5 migration, the response cache, per-task writes that replace
on resume, and the views (OpenCompass table, leaderboard, comparison with stderr, sample filters)."""

from __future__ import annotations

import math

from sqlalchemy import inspect

from app import evals
from app.db import get_engine
from app.migrations import SCHEMA_VERSION


def _run(home, name: str, acc: float, samples: list[dict] | None = None, status: str = "done") -> int:
    run = evals.start_run(home, model_ref=name, tasks="arc_easy", mode="ppl", settings={"shots": 0},
                          settings_hash="h1")
    evals.save_task(home, run.id, "arc_easy", "CC BY-SA 4.0", {"acc": {"value": acc, "stderr": 0.03, "n": 100},
                                                               "acc_norm": {"value": acc, "stderr": float("nan"),
                                                                            "n": 100}},
                    samples or [], "h1")
    evals.finish_run(home, run.id, status)
    return run.id


def test_migration_creates_the_evaluation_tables(home):
    names = set(inspect(get_engine(home)).get_table_names())
    assert {"eval_run", "eval_result", "eval_sample", "eval_cache"} <= names
    assert SCHEMA_VERSION >= 5


def test_response_cache_round_trip(home):
    cache = evals.SqliteResponseCache(home)
    cache.put_many({"k1": {"logprob": -1.5, "greedy": True}, "k2": {"texts": ["答案是 4"]}})
    cache.put_many({"k1": {"logprob": -2.0, "greedy": False}})
    assert cache.get_many(["k1", "k2", "missing"]) == {"k1": {"logprob": -2.0, "greedy": False},
                                                       "k2": {"texts": ["答案是 4"]}}


def test_saving_a_task_again_replaces_its_rows(home):
    run_id = _run(home, "m", 0.5, [{"doc_id": "1", "correct": True}])
    evals.save_task(home, run_id, "arc_easy", "CC", {"acc": {"value": 0.6, "stderr": 0.01, "n": 10}},
                    [{"doc_id": "1", "correct": False, "answer": "x", "gold": "A"}], "h1")
    rows = evals.results(home, [run_id])
    assert [(r.metric, r.value) for r in rows] == [("acc", 0.6)]
    assert len(evals.samples(home, run_id)) == 1 and evals.samples(home, run_id, wrong_only=True)[0].answer == "x"


def test_views_table_leaderboard_compare_and_search(home):
    a = _run(home, "base", 0.40, [{"doc_id": "1", "prompt": "问题：天空", "answer": "蓝", "gold": "A",
                                   "correct": True}])
    b = _run(home, "tuned", 0.55)
    _run(home, "broken", 0.99, status="failed")
    columns, rows = evals.results_table(home, [a, b])
    assert columns == [f"#{a} base", f"#{b} tuned"]
    acc = next(r for r in rows if r["metric"] == "acc")
    assert acc["dataset"] == "arc_easy" and acc["version"] == "h1" and acc[columns[1]] == 55.0
    board = evals.leaderboard(home, "arc_easy", "acc")
    assert [r["model"] for r in board] == ["tuned", "base"]  # a failed run is not on the board
    diff = {r["metric"]: r for r in evals.compare(home, a, b)}
    assert math.isclose(diff["acc"]["delta"], 0.15) and math.isclose(diff["acc"]["stderr"], math.sqrt(2) * 0.03)
    assert diff["acc_norm"]["stderr"] is None and diff["acc"]["same_settings"]
    assert [s.doc_id for s in evals.samples(home, a, search="天空")] == ["1"]
