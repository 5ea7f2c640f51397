"""The runner end to end on real files (inline and with worker processes): funnel counts add up, drop
reasons and samples are kept, duplicates go, every output format writes, a retried run reuses finished shards,
an input that yields nothing says why, and every preset recipe parses."""

from __future__ import annotations

import json
import random
import threading

import pyarrow.parquet as pq
import pytest

from engine.data.recipe import load_recipe, parse_recipe, preset_names
from engine.data.runner import NothingKept, RunOptions, run_recipe
from engine.progress import Cancelled
from tests.data.corpus import en_doc, near_copy, zh_doc


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_corpus(path, n=60, seed=0, extra=()):
    rng = random.Random(seed)
    docs = [en_doc(rng) if i % 2 else zh_doc(rng) for i in range(n)]
    docs += [docs[3], docs[4].upper().lower(), near_copy(rng, docs[5], 2), "too short", "Hallo Welt " * 40]
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"text": d, "id": i, "ask": f"question {i}"}, ensure_ascii=False) + "\n")
        f.write("{not json\n")
        for line in extra:
            f.write(line + "\n")
    return docs


def test_every_preset_parses():
    assert {"default", "pretrain-zh-en", "sft-clean"} <= set(preset_names())
    for name in preset_names():
        recipe = load_recipe(name)
        assert recipe.steps and parse_recipe(recipe.to_json()).to_json() == recipe.to_json()


@pytest.mark.parametrize("data, message", [
    ({"steps": [{"step": "sparkle"}]}, "step 1: unknown step 'sparkle'"),
    ({"steps": [{"step": "length", "min_chars": "many"}]}, "step 1 (length): min_chars"),
    ({"steps": [{"step": "length", "colour": 1}]}, "unknown parameter(s) colour"),
    ({"steps": [{"step": "exact_dedup"}, {"step": "length"}]}, "step 2 (length) must come before"),
    ({"steps": [{"step": "format", "kind": "poem"}]}, "kind: must be text, messages or packed"),
])
def test_bad_recipes_name_step_and_field(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe(data)


def test_default_recipe_funnel_and_output(tmp_path):
    write_corpus(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    m = run_recipe(load_recipe("default"), RunOptions([str(tmp_path / "in.jsonl")], out, workers=2,
                                                      shard_bytes=8000))
    stats = m["stats"]
    steps = {row["step"]: row for row in stats["steps"]}
    assert stats["records_read"] == 65 and stats["bad_input"] == {"broken_json": 1}
    assert steps["exact_dedup"]["dropped"] == {"exact_duplicate": 2}
    assert steps["minhash_dedup"]["dropped"] == {"near_duplicate": 1}
    assert steps["length"]["dropped"] == {"too_short": 1}
    assert steps["language_id"]["dropped"] == {"language_not_wanted": 1}
    assert stats["dropped_samples"]["language_not_wanted"][0]["text"].startswith("Hallo Welt")
    assert m["records_out"] == 60 and stats["languages"] == {"zh": 31, "en": 32}  # dups are counted before dedup
    order = ["normalize", "length", "language_id", "symbol_ratio", "gopher_quality", "gopher_repetition",
             "stop_words", "scrub_pii", "exact_dedup", "minhash_dedup", "format"]
    assert [row["step"] for row in stats["steps"]] == order
    for a, b in zip(stats["steps"], stats["steps"][1:], strict=False):  # a step's input: the last one's output
        assert a["out"] == b["in"] and a["in"] - a["out"] == sum(a["dropped"].values())
    rows = read_jsonl(out / "data.jsonl")
    assert len(rows) == 60 and all(r["text"] and r["lang"] in ("zh", "en") for r in rows)
    assert m["clusters"] and len(m["clusters"][0]) >= 2
    assert sum(m["histograms"]["chars"]["counts"]) == 60
    assert parse_recipe(json.loads((out / "recipe.json").read_text())).to_json() == load_recipe("default").to_json()
    assert not (out / ".work").exists()


def test_retry_reuses_finished_shards(tmp_path):
    write_corpus(tmp_path / "in.jsonl", n=40)
    opts = RunOptions([str(tmp_path / "in.jsonl")], tmp_path / "out", workers=1, shard_bytes=8000)
    recipe = load_recipe("default")
    cancel = threading.Event()

    def stop_after_first_shard(fraction=None, message=None, metrics=None, step=None):
        if message and message.startswith("cleaned"):
            cancel.set()

    with pytest.raises(Cancelled):
        run_recipe(recipe, opts, stop_after_first_shard, cancel)
    done = tmp_path / "out" / ".work" / "shard-00000.jsonl"
    assert done.exists() and not (tmp_path / "out" / ".work" / "shard-00001.stats.json").exists()
    marker = {"text": "MARKER written into the finished shard", "source": "x:1"}
    done.write_text(json.dumps(marker) + "\n", encoding="utf-8")  # a redone shard would lose this line
    m = run_recipe(recipe, opts)
    texts = [r["text"] for r in read_jsonl(tmp_path / "out" / "data.jsonl")]
    assert marker["text"] in texts and m["records_out"] == len(texts)


def test_packed_parquet_with_split_and_tokens(tmp_path, bundled_model_dir):
    write_corpus(tmp_path / "in.jsonl", n=80)
    recipe = load_recipe("pretrain-zh-en")
    recipe.steps.insert(9, ("tokenize", parse_recipe(
        {"steps": [{"step": "tokenize", "tokenizer": str(bundled_model_dir)}]}).steps[0][1]))
    m = run_recipe(recipe, RunOptions([str(tmp_path / "in.jsonl")], tmp_path / "out", workers=2))
    assert set(m["files"]) == {"train", "val"}
    table = pq.read_table(m["files"]["train"]["path"])
    assert table.num_rows == m["files"]["train"]["rows"] > 0
    row = table.to_pylist()[0]
    assert row["n_docs"] >= 2 and row["n_tokens"] >= 2048 and "\n\n" in row["text"]
    assert sum(m["histograms"]["tokens"]["counts"]) == m["records_out"]


def test_sft_messages_format(tmp_path):
    write_corpus(tmp_path / "in.jsonl", n=20)
    from engine.data.readers import Columns

    m = run_recipe(load_recipe("sft-clean"), RunOptions([str(tmp_path / "in.jsonl")], tmp_path / "out",
                                                        Columns(prompt_field="ask"), workers=1))
    rows = [r for name in ("train", "val") for r in read_jsonl(m["files"][name]["path"])]
    assert rows and all(r["messages"][0]["role"] == "user" and r["messages"][1]["content"] == r["text"]
                        for r in rows)
    assert rows[0]["messages"][0]["content"].startswith("question")


def test_input_that_yields_nothing_says_why(tmp_path):
    (tmp_path / "blob.jsonl").write_bytes(b"\x00\x00binary")
    with pytest.raises(NothingKept, match="no readable input files.*binary_file"):
        run_recipe(load_recipe("default"), RunOptions([str(tmp_path / "blob.jsonl")], tmp_path / "o1"))
    (tmp_path / "short.jsonl").write_text('{"text": "tiny"}\n{"text": "small"}\n')
    with pytest.raises(NothingKept, match="all 2 records were dropped: length/too_short 2"):
        run_recipe(load_recipe("default"), RunOptions([str(tmp_path / "short.jsonl")], tmp_path / "o2"))
    (tmp_path / "broken.jsonl").write_text("{oops\n")
    with pytest.raises(NothingKept, match=r"no records could be read: 1 × broken_json \(e.g. .*broken.jsonl:1\)"):
        run_recipe(load_recipe("default"), RunOptions([str(tmp_path / "broken.jsonl")], tmp_path / "o3"))
