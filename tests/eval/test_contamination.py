"""The contamination check on hand-made data whose contaminated items are known: the n-gram scan over every file
shape a dataset comes in, and a stored run marked and re-scored on its clean items in a real SQLite store (PPL
accuracy, CircularEval and pass@k), then the `contamination` job kind from the CLI."""

from __future__ import annotations

import json
import string
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app import evals
from app.contamination import check_run, check_tasks
from app.db import session
from app.tables import Dataset
from engine.eval import contamination as cont
from engine.eval.contamination import find_contaminated, normalize, tokens
from tests.helpers import REPO, child_env

# Three items of 14+ words, one short item (5 words), one of 9 words (checked as a whole).
ITEMS = {
    "a": "The mitochondria is the powerhouse of the cell and produces most of its chemical energy",
    "b": "Which planet in our solar system has the largest number of confirmed moons orbiting it today",
    "c": "A train leaves the station at nine and travels sixty miles per hour toward the coast",
    "short": "What is two plus two",
    "nine": "Name the longest river that flows through Egypt and Sudan",
}


def test_normalization_matches_lm_evals_janitor_on_ascii_and_splits_cjk():
    text = "Hello, World! It's 3.14 -- isn't_it? (yes)"
    janitor_table = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)
    assert normalize(text).split() == text.translate(janitor_table).split()
    assert tokens("“天空”是蓝色的。Blue SKY!") == ["天", "空", "是", "蓝", "色", "的", "blue", "sky"]
    # ASCII text takes a fast path: it must tokenize exactly as the general (Unicode) path does
    for ascii_text in (text, "tab\there\x00nul\x1fsep_under-score", "A\r\nB  C\x0bD"):
        assert tokens("é " + ascii_text) == ["é", *tokens(ascii_text)]


def test_jsonl_scan_finds_the_overlapping_items_only(tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [
        # a: 13 consecutive words of item a, with other case and punctuation, inside unrelated text
        {"text": "Lecture notes. THE MITOCHONDRIA, is the powerhouse of the cell -- and produces most of its... end"},
        # b: only 12 consecutive words of item b: below the 13-gram threshold
        {"messages": [{"role": "user", "content": "Tell me: planet in our solar system has the largest number of "
                                                  "confirmed moons"}, {"role": "assistant", "content": "Saturn"}]},
        # nine: the whole 9-word item, inside a longer record
        {"prompt": "Quiz: name the longest river that flows through Egypt and Sudan. Answer: the Nile"},
        {"text": "What is two plus two? Four."},  # the short item's words: too short to judge, never marked
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    report = find_contaminated(ITEMS, data)
    assert set(report.contaminated) == {"a", "nine"}
    assert report.contaminated["a"].startswith("the mitochondria is the powerhouse")
    assert report.too_short == {"short"}
    assert report.records == 4

    # with n=12, item b's 12 shared words now count
    assert set(find_contaminated(ITEMS, data, n=12).contaminated) == {"a", "b", "nine"}


def test_every_file_shape_and_a_prepared_dataset_folder(tmp_path, monkeypatch):
    folder = tmp_path / "prepared"
    (folder / ".work").mkdir(parents=True)
    # the bookkeeping files mention item c word for word: they are not training text and must be skipped
    (folder / "manifest.json").write_text(json.dumps({"note": ITEMS["c"]}), encoding="utf-8")
    (folder / ".work" / "shard.jsonl").write_text(json.dumps({"text": ITEMS["c"]}) + "\n", encoding="utf-8")
    messages = json.dumps([{"role": "user", "content": "Question: " + ITEMS["b"]}])
    pq.write_table(pa.table({"text": ["unrelated words here"], "messages": [messages]}), folder / "train.parquet")
    assert set(find_contaminated(ITEMS, folder).contaminated) == {"b"}

    # a text file scanned in blocks: item a's words straddle a block boundary and are still found
    monkeypatch.setattr(cont, "TEXT_BLOCK_LINES", 2)
    words = ITEMS["a"].split()
    lines = ["intro line", "more intro " + " ".join(words[:6]), " ".join(words[6:]), "outro", "outro"]
    txt = tmp_path / "book.txt"
    txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = find_contaminated(ITEMS, txt)
    assert set(report.contaminated) == {"a"} and report.records == 3

    csv_file = tmp_path / "sft.csv"
    csv_file.write_text(f"instruction,output\n\"{ITEMS['c']}\",sixty\n", encoding="utf-8")
    assert set(find_contaminated(ITEMS, csv_file).contaminated) == {"c"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: not valid JSON"):
        find_contaminated(ITEMS, bad)


def test_chinese_items_are_checked_per_character(tmp_path):
    items = {"zh": "下列哪一个城市是中华人民共和国的首都并且是政治文化中心",
             "other": "长江是亚洲最长的河流它流经中国许多省份"}
    data = tmp_path / "zh.jsonl"
    record = {"text": "背景：下列哪一个城市是中华人民共和国的首都？答案：北京"}
    data.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert set(find_contaminated(items, data).contaminated) == {"zh"}


# ---- a stored run ----------------------------------------------------------------------------------------------

def _choice_set(tmp_path):
    """A custom multiple-choice set of four items; items on lines 2 and 4 will be in the training data."""
    questions = [
        "Which gas do green plants absorb from the air during photosynthesis in bright sunlight",
        "Which metal is liquid at room temperature and was once used inside glass thermometers",
        "Which organ of the human body pumps blood through the arteries and the veins all day",
        "Which ocean lies between the continents of Africa and Australia on most world maps",
    ]
    path = tmp_path / "science.csv"
    path.write_text("question,A,B,C,answer\n" + "".join(f"{q},x,y,z,A\n" for q in questions), encoding="utf-8")
    return path, questions


def _register(home, tmp_path, texts, name="sft-data"):
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    with session(home) as s:
        s.add(Dataset(name=name, path=str(data), format="jsonl", rows=len(texts)))
    return data


def _metric(home, run_id, task, metric):
    [row] = [r for r in evals.results(home, [run_id]) if r.task == task and r.metric == metric]
    return row


def test_check_run_marks_samples_and_stores_clean_scores(home, tmp_path):
    from engine.eval.runner import score

    path, questions = _choice_set(tmp_path)
    task = str(path)
    correct = {"2": True, "3": False, "4": True, "5": False}  # CSV lines 2..5 are the item ids
    samples = [{"doc_id": d, "prompt": "p", "answer": "x", "extracted": "A", "gold": "A", "correct": ok,
                "scores": {"acc": float(ok), "acc_norm": float(not ok)}} for d, ok in correct.items()]
    run = evals.start_run(home, model_ref="m", tasks=task, mode="ppl", settings={"tasks": task}, settings_hash="h1")
    evals.save_task(home, run.id, task, "your own data", score(samples, False), samples, "h1")
    evals.finish_run(home, run.id, "done")
    # the items on lines 2 and 4 (both answered right) appear in the training text
    _register(home, tmp_path, [f"Quiz time: {questions[0]}? Answer: carbon dioxide", "unrelated",
                               f"{questions[2].upper()}!"])

    summary = check_run(home, run.id, "sft-data")
    assert summary["tasks"][task]["contaminated"] == 2 and summary["tasks"][task]["items"] == 4
    marks = {s.doc_id: s.detail["contaminated"] for s in evals.samples(home, run.id, task)}
    assert marks == {"2": True, "3": False, "4": True, "5": False}
    assert [s.doc_id for s in evals.samples(home, run.id, task, contamination="contaminated")] == ["2", "4"]
    assert [s.doc_id for s in evals.samples(home, run.id, task, contamination="clean")] == ["3", "5"]
    assert "photosynthesis" in next(s for s in evals.samples(home, run.id, task) if s.doc_id == "2").detail["overlap"]
    # clean items are lines 3 and 5, both wrong: acc_clean 0, acc_norm_clean 1; full acc is 0.5
    assert _metric(home, run.id, task, "acc").value == 0.5
    assert (_metric(home, run.id, task, "acc_clean").value, _metric(home, run.id, task, "acc_clean").n) == (0.0, 2)
    assert _metric(home, run.id, task, "acc_norm_clean").value == 1.0
    assert _metric(home, run.id, task, "contaminated_fraction").value == 0.5
    assert summary["tasks"][task]["metrics"]["acc"] == {"full": 0.5, "clean": 0.0}
    assert evals.get_run(home, run.id).settings["contamination"]["dataset"] == "sft-data"

    # a second check (another dataset, by path) replaces the first: no duplicate rows, new marks
    other = _register(home, tmp_path, [questions[1]], name="other")
    check_run(home, run.id, str(other))
    metrics = [r.metric for r in evals.results(home, [run.id])]
    assert sorted(metrics) == sorted(["acc", "acc_norm", "acc_clean", "acc_norm_clean", "contaminated_fraction"])
    assert _metric(home, run.id, task, "acc_clean").value == pytest.approx(2 / 3)
    assert [s.doc_id for s in evals.samples(home, run.id, task) if s.detail["contaminated"]] == ["3"]

    with pytest.raises(ValueError, match="no registered dataset and no file or folder named 'nope'"):
        check_run(home, run.id, "nope")


def test_circular_and_pass_at_k_are_rescored_on_clean_items(home, tmp_path):
    from engine.eval.runner import score

    path, questions = _choice_set(tmp_path)
    task = str(path)
    # CircularEval: three rotations per item; item 2 right in every rotation, item 3 right in rotation 0 only
    right = {("2", 0): 1, ("2", 1): 1, ("2", 2): 1, ("3", 0): 1, ("3", 1): 0, ("3", 2): 0,
             ("4", 0): 0, ("4", 1): 0, ("4", 2): 0, ("5", 0): 1, ("5", 1): 1, ("5", 2): 1}
    samples = [{"doc_id": d, "rotation": r, "correct": bool(ok), "n": 1, "n_correct": ok}
               for (d, r), ok in right.items()]

    run = evals.start_run(home, model_ref="m", tasks=task, mode="gen", settings={"tasks": task, "circular": True},
                          settings_hash="h2")
    evals.save_task(home, run.id, task, "own", score(samples, True), samples, "h2")
    _register(home, tmp_path, [questions[3]])  # item on line 5 (perfect in every rotation) is contaminated
    check_run(home, run.id, "sft-data")
    assert _metric(home, run.id, task, "perf_circular").value == 0.5
    assert _metric(home, run.id, task, "perf_circular_clean").value == pytest.approx(1 / 3)
    assert _metric(home, run.id, task, "acc_origin_clean").value == pytest.approx(2 / 3)
    assert _metric(home, run.id, task, "contaminated_fraction").value == 0.25

    # pass@k: 4 samples per question; the contaminated question was the only one solved
    open_set = tmp_path / "open.jsonl"
    open_set.write_text("".join(json.dumps({"question": q, "answer": "x"}) + "\n" for q in questions[:2]),
                        encoding="utf-8")
    code = [{"doc_id": "1", "correct": True, "n": 4, "n_correct": 4, "outcome": "pass"},
            {"doc_id": "2", "correct": False, "n": 4, "n_correct": 0, "outcome": "fail"}]
    run2 = evals.start_run(home, model_ref="m", tasks=str(open_set), mode="gen", settings={"tasks": str(open_set)},
                           settings_hash="h3")
    evals.save_task(home, run2.id, str(open_set), "own", score(code, False), code, "h3")
    _register(home, tmp_path, [questions[0]], name="leak")
    check_run(home, run2.id, "leak")
    assert _metric(home, run2.id, str(open_set), "pass@4").value == 0.5
    assert _metric(home, run2.id, str(open_set), "pass@4_clean").value == 0.0
    assert _metric(home, run2.id, str(open_set), "pass@1_clean").n == 1


def test_judged_samples_keep_rule_and_judge_metrics_apart(home, tmp_path):
    """A judged sample's `correct` is the judge's verdict and `rule_correct` the extractor's: exact_match_clean is
    rescored on the rule, judge_accuracy_clean on the verdicts, win_rate_clean on the pairwise scores."""
    from engine.eval.metrics import summarize

    _, questions = _choice_set(tmp_path)
    open_set = tmp_path / "open.jsonl"
    open_set.write_text("".join(json.dumps({"question": q, "answer": "x"}) + "\n" for q in questions),
                        encoding="utf-8")
    task = str(open_set)
    rule = [True, False, True, True]
    judge = [True, True, False, False]
    pair = [1.0, 0.5, 0.0, 1.0]
    samples = [{"doc_id": str(i + 1), "correct": judge[i], "rule_correct": rule[i], "n": 1,
                "n_correct": int(rule[i]), "judge": {"verdict": "A" if judge[i] else "B", "reply": "…",
                                                     "invalid": False},
                "pairwise": {"score": pair[i], "outcome": "win"}} for i in range(4)]
    metrics = summarize({"exact_match": [float(x) for x in rule], "judge_accuracy": [float(x) for x in judge],
                         "judge_invalid": [0.0] * 4, "win_rate": pair})
    run = evals.start_run(home, model_ref="m", tasks=task, mode="gen", settings={"tasks": task, "judge": "j"},
                          settings_hash="hj")
    evals.save_task(home, run.id, task, "own", metrics, samples, "hj")
    _register(home, tmp_path, [questions[0]])  # item 1: right by rule and by the judge, won its comparison
    check_run(home, run.id, "sft-data")
    assert _metric(home, run.id, task, "exact_match_clean").value == pytest.approx(2 / 3)
    assert _metric(home, run.id, task, "judge_accuracy_clean").value == pytest.approx(1 / 3)
    assert _metric(home, run.id, task, "win_rate_clean").value == pytest.approx(0.5)
    assert _metric(home, run.id, task, "judge_invalid_clean").value == 0.0


def test_agent_benchmark_items_get_a_clean_share_of_right_answers(home, tmp_path):
    """BFCL scores itself; its `accuracy` is the share of items right, so it is rescored on the clean items, while
    a per-call metric has no clean row."""
    from engine.eval.metrics import summarize
    from engine.eval.tasks import get_task

    docs = get_task("bfcl_simple").docs("test")[:3]
    samples = [{"doc_id": d["id"], "prompt": d["question"], "correct": ok}
               for d, ok in zip(docs, [True, False, True], strict=True)]
    metrics = summarize({"accuracy": [1.0, 0.0, 1.0], "call_rate": [1.0, 1.0, 0.5]})
    run = evals.start_run(home, model_ref="m", tasks="bfcl_simple", mode="gen", settings={"tasks": "bfcl_simple"},
                          settings_hash="ha")
    evals.save_task(home, run.id, "bfcl_simple", "Apache-2.0", metrics, samples, "ha")
    _register(home, tmp_path, [f"Exercise 4. {docs[2]['question']} Show your work."])
    summary = check_run(home, run.id, "sft-data")
    assert summary["tasks"]["bfcl_simple"]["contaminated"] == 1
    assert _metric(home, run.id, "bfcl_simple", "accuracy_clean").value == 0.5
    assert "call_rate_clean" not in {r.metric for r in evals.results(home, [run.id])}


def test_check_tasks_without_a_run(home, tmp_path):
    path, questions = _choice_set(tmp_path)
    data = _register(home, tmp_path, [questions[1] + " " + questions[2]])
    result = check_tasks(str(path), str(data))
    assert result["tasks"][str(path)] == {"items": 4, "contaminated": 2, "fraction": 0.5, "examples": ["3", "4"]}
    assert check_tasks(str(path), "sft-data", root=home)["dataset"] == "sft-data"


def test_contamination_job_from_the_cli(home, tmp_path):
    from engine.eval.runner import score

    path, questions = _choice_set(tmp_path)
    task = str(path)
    samples = [{"doc_id": str(i), "correct": i % 2 == 0, "scores": {"acc": float(i % 2 == 0)}} for i in range(2, 6)]
    run = evals.start_run(home, model_ref="m", tasks=task, mode="ppl", settings={"tasks": task}, settings_hash="h")
    evals.save_task(home, run.id, task, "own", score(samples, False), samples, "h")
    _register(home, tmp_path, [questions[0]])
    r = subprocess.run([sys.executable, "-m", "cli", "contamination", "--run", str(run.id), "--dataset", "sft-data"],
                       cwd=REPO, env=child_env(home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert _metric(home, run.id, task, "contaminated_fraction").value == 0.25
    assert _metric(home, run.id, task, "acc_clean").value == pytest.approx(1 / 3)
    r = subprocess.run([sys.executable, "-m", "cli", "contamination", "--dataset", "sft-data"],
                       cwd=REPO, env=child_env(home), capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "tasks: name a run to check" in r.stdout + r.stderr
