"""Run a recipe over input files: shard, process shards in parallel, dedup across the corpus, write the output.

Phase 1 (all cores): each shard is read and its records cleaned and filtered (`shard.process_shard`); finished
shards are reused when the run is retried with the same recipe. Phase 2 (one process): exact duplicates by
64-bit text hash, near duplicates by MinHash-LSH over the signatures, memory-mapped. Phase 3: survivors are
streamed in input order into the chosen format, split, and written; then `manifest.json` (counts, funnel,
reasons, samples, histograms, duplicate clusters) and `recipe.json` (to rebuild the dataset).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.minhash import cluster, optimal_bands
from engine.data.readers import Columns, list_inputs, plan_shards
from engine.data.recipe import Format, Recipe
from engine.data.shard import process_shard, shard_paths
from engine.data.stats import CHAR_BINS, TOKEN_BINS, Stats, hist_add, histogram, sample
from engine.data.writers import SplitWriter
from engine.procs import reset_child_signals, sigterm_deferred
from engine.progress import Progress, check_cancel, no_progress

CLUSTERS_SHOWN = 20


class NothingKept(ValueError):
    """The run read its inputs but kept no record; the message says where the records went."""


@dataclass
class RunOptions:
    inputs: list[str]
    output: Path
    columns: Columns = field(default_factory=Columns)
    workers: int = 0  # 0: every core
    shard_bytes: int = 32 << 20  # the most; smaller when that leaves cores idle


def _work_dir(opts: RunOptions, recipe: Recipe, files: list, shard_bytes: int) -> tuple[Path, str]:
    """The shard folder, and what became of an earlier run's shards in it (empty when there was none).

    Finished shards are kept only when the recipe, the inputs (path, size and modification time of every
    file), the columns and the shard size all match the run that wrote them; otherwise the folder is wiped.
    """
    work = opts.output / ".work"
    inputs = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]
    key = hashlib.sha256(json.dumps([recipe.to_json(), inputs, vars(opts.columns), shard_bytes],
                                    sort_keys=True).encode()).hexdigest()
    stamp = work / "key"
    note = ""
    if work.exists():
        if stamp.exists() and stamp.read_text() == key:
            finished = len(list(work.glob("shard-*.stats.json")))
            note = f"reusing {finished} finished shards of an earlier run" if finished else ""
        else:
            note = "an earlier run's shards do not match this recipe and these inputs: starting fresh"
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name("key.part")
    tmp.write_text(key)
    os.replace(tmp, stamp)
    return work, note


def _run_shards(shards, recipe: Recipe, opts: RunOptions, work: Path, progress: Progress,
                cancel: threading.Event | None) -> Stats:
    total_bytes = sum((s.end if s.end >= 0 else os.path.getsize(s.path)) - s.start for s in shards) or 1
    stats, done_bytes, started = Stats(), 0, time.perf_counter()
    workers = min(opts.workers or os.cpu_count() or 1, max(len(shards), 1))
    args = [(s, recipe.to_json(), opts.columns, work) for s in shards]

    def finished(result: Stats) -> None:
        nonlocal done_bytes
        stats.merge(result)
        done_bytes += result.bytes_read
        rate = done_bytes / max(time.perf_counter() - started, 1e-6) / 1e6
        progress(0.85 * done_bytes / total_bytes, f"cleaned {done_bytes / 1e6:.0f}/{total_bytes / 1e6:.0f} MB",
                 {"mb_per_s": rate, "records_read": stats.records_read}, step=done_bytes)

    if workers <= 1:
        for a in args:
            check_cancel(cancel)
            finished(process_shard(*a))
        return stats
    _in_pool(args, workers, finished, cancel)
    return stats


def _in_pool(args: list, workers: int, finished, cancel: threading.Event | None) -> None:
    """process_shard over args in `workers` forked processes, handing each result to `finished` as it comes.

    The children take SIGTERM's default action and die with this process; the pool ends by a clean shutdown
    after the last shard, and by SIGKILL to every child on cancel or error, so no child is ever waited on while
    it holds the queue's lock. A child that dies (the OOM killer, a crash) fails the run.
    """
    before = set(multiprocessing.active_children())
    with sigterm_deferred():  # no child may run this process's SIGTERM handler, even before its initializer
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),  # no torch/CUDA here
                                   initializer=reset_child_signals, initargs=(os.getpid(),))
        pending = {pool.submit(process_shard, *a) for a in args}
    children = set(multiprocessing.active_children()) - before
    try:
        while pending:
            check_cancel(cancel)
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)  # wake for a cancel
            for future in done:
                finished(future.result())
    except BrokenProcessPool:
        raise RuntimeError("a shard worker process died (killed, or out of memory?); retry the job to "
                           "continue from the finished shards") from None
    finally:
        if pending:
            for child in children:
                with contextlib.suppress(OSError):
                    child.kill()
        pool.shutdown(wait=True, cancel_futures=True)


def _dedup(recipe: Recipe, work: Path, n_shards: int, stats: Stats) -> tuple[np.ndarray, np.ndarray | None]:
    """(drop reason per survivor: 0 keep, 1 exact, 2 near; cluster id per survivor or None)."""
    exact, near = recipe.step("exact_dedup"), recipe.step("minhash_dedup")
    if not (exact or near):
        return np.zeros(0, dtype=np.uint8), None
    n = sum(len(np.load(shard_paths(work, i)["hashes" if exact else "sigs"], mmap_mode="r"))
            for i in range(n_shards))
    drop = np.zeros(n, dtype=np.uint8)
    clusters = None
    if exact:
        parts = [np.load(shard_paths(work, i)["hashes"]) for i in range(n_shards)]
        hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        first = np.zeros(n, dtype=bool)
        first[np.unique(hashes, return_index=True)[1]] = True
        drop[~first] = 1
        row = stats.step_row("exact_dedup")
        row.update({"in": n, "out": int(first.sum()), "dropped": {"exact_duplicate": int((~first).sum())}})
    if near:
        sig_file = work / "all.sig.npy"
        sigs = np.lib.format.open_memmap(sig_file, mode="w+", dtype=np.uint32, shape=(n, near.num_perm))
        at = 0
        for i in range(n_shards):
            part = np.load(shard_paths(work, i)["sigs"])
            sigs[at:at + len(part)] = part
            at += len(part)
        sigs.flush()
        bands, rows = optimal_bands(near.threshold, near.num_perm)
        clusters = cluster(np.load(sig_file, mmap_mode="r"), near.threshold, bands, rows)
        near_dup = (clusters != np.arange(n)) & (drop == 0)
        n_in = int((drop == 0).sum())
        drop[near_dup] = 2
        row = stats.step_row("minhash_dedup")
        row.update({"in": n_in, "out": n_in - int(near_dup.sum()),
                    "dropped": {"near_duplicate": int(near_dup.sum())}})
    return drop, clusters


def run_recipe(recipe: Recipe, opts: RunOptions, progress: Progress = no_progress,
               cancel: threading.Event | None = None) -> dict:
    """Run recipe over opts.inputs into opts.output; returns the manifest (also written as manifest.json)."""
    opts.output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pre = Stats()
    files = list_inputs(opts.inputs, pre.bad)
    workers = opts.workers or os.cpu_count() or 1
    total = sum(p.stat().st_size for p, _ in files)
    shard_bytes = min(opts.shard_bytes, max(1 << 20, total // (4 * workers)))  # ≥ 4 shards a core when large
    shards = plan_shards(files, shard_bytes)
    work, earlier = _work_dir(opts, recipe, files, shard_bytes)
    progress(0.0, f"{len(files)} files in {len(shards)} shards" + (f"; {earlier}" if earlier else ""))
    stats = _run_shards(shards, recipe, opts, work, progress, cancel)
    stats.merge(pre)
    check_cancel(cancel)
    progress(0.87, "deduplicating")
    drop, clusters = _dedup(recipe, work, len(shards), stats)
    check_cancel(cancel)
    progress(0.92, "writing output")
    result = _write(recipe, opts, work, len(shards), stats, drop, clusters)
    manifest = {"recipe": recipe.to_json(), "inputs": [str(p) for p, _ in files], "columns": vars(opts.columns),
                "seconds": round(time.perf_counter() - started, 2), "workers": opts.workers or os.cpu_count(),
                **result, "stats": stats.to_json()}
    for name, data in (("recipe.json", recipe.to_json()), ("manifest.json", manifest)):
        tmp = opts.output / (name + ".part")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, opts.output / name)
    shutil.rmtree(work, ignore_errors=True)
    progress(1.0, f"kept {manifest['records_out']} of {stats.records_read} records")
    if manifest["records_out"] == 0:
        raise NothingKept(why_nothing(manifest))
    return manifest


def _write(recipe: Recipe, opts: RunOptions, work: Path, n_shards: int, stats: Stats, drop: np.ndarray,
           clusters: np.ndarray | None) -> dict:
    fmt = recipe.step("format") or Format()
    writer = SplitWriter(opts.output, fmt, recipe.step("split"))
    chars, tokens = histogram(CHAR_BINS), histogram(TOKEN_BINS)
    shown: dict[int, list] = {}
    if clusters is not None:
        roots, counts = np.unique(clusters, return_counts=True)
        shown = {int(r): [] for r in roots[counts > 1][:CLUSTERS_SHOWN]}
    fmt_row = stats.step_row("format")
    index = 0
    for i in range(n_shards):
        with open(shard_paths(work, i)["records"], encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if clusters is not None and int(clusters[index]) in shown:
                    shown[int(clusters[index])].append(sample(rec))
                reason = {1: "exact_duplicate", 2: "near_duplicate"}.get(int(drop[index])) if len(drop) else None
                index += 1
                if reason:  # counted in _dedup; here only its sample is kept
                    stats.dropped("exact_dedup" if reason == "exact_duplicate" else "minhash_dedup", reason, rec,
                                  count=False)
                    continue
                fmt_row["in"] += 1
                hist_add(chars, len(rec["text"]))
                if "n_tokens" in rec:
                    hist_add(tokens, rec["n_tokens"])
                if (why := writer.add(rec)) is not None:
                    stats.dropped("format", why, rec)
                else:
                    fmt_row["out"] += 1
    files = writer.close()
    return {"records_in": stats.records_read, "records_out": fmt_row["out"], "files": files,
            "rows_written": sum(f["rows"] for f in files.values()), "format": fmt.kind, "write_as": fmt.write_as,
            "histograms": {"chars": chars, "tokens": tokens if sum(tokens["counts"]) else None},
            "clusters": [members for members in shown.values() if len(members) > 1]}


def why_nothing(manifest: dict) -> str:
    """One sentence on where the records went, for a run that kept none."""
    stats = manifest["stats"]
    if not manifest["inputs"]:
        bad = ", ".join(f"{k}: {', '.join(v)}" for k, v in stats["bad_examples"].items())
        return f"no readable input files ({bad or 'nothing found'})"
    if stats["records_read"] == 0:
        bad = "; ".join(f"{n} × {k} (e.g. {stats['bad_examples'][k][0]})" for k, n in stats["bad_input"].items())
        return f"no records could be read: {bad or 'the files are empty'}"
    drops: dict[str, int] = {}
    for row in stats["steps"]:
        for reason, n in row["dropped"].items():
            if n:
                drops[f"{row['step']}/{reason}"] = n
    top = ", ".join(f"{k} {n}" for k, n in sorted(drops.items(), key=lambda kv: -kv[1])[:4])
    return f"all {stats['records_read']} records were dropped: {top}"
