"""One shard's work, run in a worker process: read, apply the record steps in recipe order, and write the
survivors plus what the dedup steps need (a 64-bit text hash, a MinHash signature) to the shard's files.

Files are written under temporary names and renamed; the stats file is renamed last and marks the shard done,
so a crashed or retried run skips finished shards and redoes only the others.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from engine.data.minhash import MinHasher
from engine.data.readers import Columns, Shard, read_shard
from engine.data.recipe import parse_recipe
from engine.data.stats import Stats


def shard_paths(work: Path, index: int) -> dict[str, Path]:
    stem = work / f"shard-{index:05d}"
    return {"records": stem.with_suffix(".jsonl"), "hashes": stem.with_suffix(".hash.npy"),
            "sigs": stem.with_suffix(".sig.npy"), "stats": stem.with_suffix(".stats.json")}


def exact_key(text: str, ignore_case_and_space: bool) -> int:
    if ignore_case_and_space:
        text = "".join(text.lower().split())
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def process_shard(shard: Shard, recipe_json: dict, columns: Columns, work: Path) -> Stats:
    paths = shard_paths(work, shard.index)
    if paths["stats"].exists():  # finished by an earlier run
        return Stats.from_json(json.loads(paths["stats"].read_text(encoding="utf-8")))
    recipe = parse_recipe(recipe_json)
    steps = recipe.record_steps()
    exact, near = recipe.step("exact_dedup"), recipe.step("minhash_dedup")
    hasher = MinHasher(near.num_perm, near.ngram, near.seed) if near else None
    stats = Stats()
    for name, _ in steps:
        stats.step_row(name)
    hashes: list[int] = []
    sigs: list[np.ndarray] = []
    with open(_tmp(paths["records"]), "w", encoding="utf-8") as out:
        for rec in read_shard(shard, columns, stats.bad):
            stats.records_read += 1
            for name, step in steps:
                row = stats.step_row(name)
                row["in"] += 1
                reason = step.apply(rec)
                if reason is not None:
                    stats.dropped(name, reason, rec)
                    break
                row["out"] += 1
            else:
                stats.kept(rec)
                if exact:
                    hashes.append(exact_key(rec["text"], exact.ignore_case_and_space))
                if hasher:
                    sigs.append(hasher.signature(rec["text"]))
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    end = shard.end if shard.end >= 0 else os.path.getsize(shard.path)
    stats.bytes_read = end - shard.start
    for key, values, dtype in (("hashes", hashes, np.uint64), ("sigs", sigs, np.uint32)):
        with open(_tmp(paths[key]), "wb") as f:
            array = np.array(values, dtype=dtype) if key == "hashes" else (
                np.stack(values) if values else np.zeros((0, near.num_perm if near else 0), dtype=np.uint32))
            np.save(f, array)
    for key in ("records", "hashes", "sigs"):
        os.replace(_tmp(paths[key]), paths[key])
    _tmp(paths["stats"]).write_text(json.dumps(stats.to_json(), ensure_ascii=False), encoding="utf-8")
    os.replace(_tmp(paths["stats"]), paths["stats"])
    return stats
