"""Data preparation throughput and memory: our `default` recipe against datatrove running the equivalent
pipeline on the same generated corpus, in the same run; then our peak RSS as the corpus doubles.

Corpus: seeded English and Chinese documents (word/phrase pools, so every document differs) with planted exact
copies (5%) and near copies (5%), written as jsonl files of ~25 MB. Ours: `run_recipe(default)`, one process
per core. datatrove: JsonlReader → GopherRepetitionFilter → GopherQualityFilter → PIIFormatter → JsonlWriter,
then its four MinHash stages (signatures, buckets, clusters, filter) with the same shingle size and 14×8
hashes, all on LocalPipelineExecutor with one worker per core. datatrove has no offline language ID (its
LanguageFilter downloads fastText's lid.176), so its side has no language step; ours runs one, and also
normalization, symbol and stop-word rules and exact dedup: the comparison is conservative for us.
Peak RSS is the largest sum of RSS over the process tree, sampled every 0.1 s.

Run from the repository root: `python -m bench.data_prep [--mb 200]`. Appends a dated row to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
EN_WORDS = [
    "river", "teacher", "village", "council", "garden", "library", "road", "farmer", "bridge", "market",
    "letter", "boat", "school", "festival", "harvest", "forest", "island", "painter", "doctor", "kitchen",
    "museum", "station", "window", "morning", "winter", "history", "city", "music", "language", "computer",
    "mountain", "science", "people", "water", "story", "family", "country", "answer", "question"
]
EN_ADJ = [
    "old", "young", "quiet", "small", "bright", "green", "cold", "warm", "busy", "distant", "gentle", "narrow",
    "wooden", "famous", "hidden"
]
EN_VERB = [
    "visited", "painted", "described", "studied", "repaired", "watched", "followed", "remembered", "discovered",
    "admired"
]
ZH_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
            "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性"
            "好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第"
            "向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管")


def en_doc(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(15, 40)):
        sentences.append(f"The {rng.choice(EN_ADJ)} {rng.choice(EN_WORDS)} {rng.choice(EN_VERB)} the "
                         f"{rng.choice(EN_ADJ)} {rng.choice(EN_WORDS)} near a {rng.choice(EN_WORDS)} and "
                         f"{rng.choice(EN_WORDS)} {rng.randint(2, 9999)}.")
    return "\n".join(" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4))


def zh_doc(rng: random.Random) -> str:
    sentences = ["".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(12, 30))) + rng.choice("。！？")
                 for _ in range(rng.randint(20, 50))]
    return "\n".join("".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4))


def make_corpus(folder: Path, megabytes: int, seed: int = 0) -> int:
    """Write ~megabytes of jsonl into folder; returns the bytes written."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written, file_no, recent = 0, 0, []
    out = None
    while written < megabytes * 1_000_000:
        if out is None or out.tell() > 25_000_000:
            if out:
                out.close()
            out = open(folder / f"part-{file_no:03d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
            file_no += 1
        roll = rng.random()
        if recent and roll < 0.05:
            text = rng.choice(recent)  # exact copy
        elif recent and roll < 0.10:
            words = list(rng.choice(recent))
            for _ in range(3):
                words[rng.randrange(len(words))] = "X"
            text = "".join(words)  # near copy
        else:
            text = en_doc(rng) if rng.random() < 0.5 else zh_doc(rng)
            recent = (recent + [text])[-500:]
        line = json.dumps({"text": text, "id": written}, ensure_ascii=False) + "\n"
        out.write(line)
        written += len(line.encode("utf-8"))
    out.close()
    return written


def ours(corpus: Path, out: Path, workers: int) -> dict:
    from engine.data.recipe import load_recipe
    from engine.data.runner import RunOptions, run_recipe

    m = run_recipe(load_recipe("default"), RunOptions([str(corpus)], out, workers=workers))
    return {"records_in": m["records_in"], "records_out": m["records_out"]}


def datatrove(corpus: Path, out: Path, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    tasks = len(list(corpus.glob("*.jsonl")))
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    logs = str(out / "logs")

    def run(pipeline, n_tasks, name):
        LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=min(workers, n_tasks),
                              logging_dir=f"{logs}/{name}").run()

    run([JsonlReader(str(corpus)), GopherRepetitionFilter(), GopherQualityFilter(), PIIFormatter(),
         JsonlWriter(str(out / "filtered"))], tasks, "filter")
    run([JsonlReader(str(out / "filtered")), MinhashDedupSignature(str(out / "sigs"), config=config)], tasks, "sig")
    run([MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=config)], config.num_buckets, "buckets")
    run([MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=config)], 1, "cluster")
    run([JsonlReader(str(out / "filtered")), MinhashDedupFilter(str(out / "remove")),
         JsonlWriter(str(out / "final"))], tasks, "final")
    kept = 0
    for f in (out / "final").glob("*.jsonl*"):
        import gzip

        with gzip.open(f, "rt") if f.suffix == ".gz" else open(f) as fh:
            kept += sum(1 for _ in fh)
    return {"records_out": kept}


def measure(which: str, corpus: Path, out: Path, workers: int) -> dict:
    """Run one side in a child process; wall time and peak RSS of its whole process tree."""
    cmd = [sys.executable, "-m", "bench.data_prep", "--side", which, "--corpus", str(corpus), "--out", str(out),
           "--workers", str(workers)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            cwd=Path(__file__).resolve().parents[1])
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed with exit code {proc.returncode}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    return {**result, "seconds": time.perf_counter() - started, "peak_rss_mb": peak / 1e6}


def append_row(result: str) -> None:
    from importlib.metadata import version

    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores ({platform.system()})"
    software = (f"Python {platform.python_version()}, datatrove {version('datatrove')}, spacy {version('spacy')}, "
                f"py3langid {version('py3langid')}, numpy {version('numpy')}")
    row = f"| {datetime.date.today()} | bench/data_prep.py | {device} | {software} | {result} |\n"
    with open(BENCHMARKS_MD, "a", encoding="utf-8") as f:
        f.write(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB (the RSS check doubles it)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--side", choices=["ours", "datatrove"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    if args.side:  # child: run one side, print its result as the last line
        fn = ours if args.side == "ours" else datatrove
        print(json.dumps(fn(Path(args.corpus), Path(args.out), args.workers)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="inkstone-bench-data-"))
    try:
        small, big = tmp / "corpus-1x", tmp / "corpus-2x"
        size = make_corpus(small, args.mb)
        size2 = make_corpus(big, 2 * args.mb)
        print(f"corpus {size / 1e6:.0f} MB and {size2 / 1e6:.0f} MB in {tmp}", flush=True)
        o = measure("ours", small, tmp / "out-ours", args.workers)
        d = measure("datatrove", small, tmp / "out-dt", args.workers)
        o2 = measure("ours", big, tmp / "out-ours-2x", args.workers)
        mbps = {k: size / 1e6 / r["seconds"] / args.workers for k, r in (("ours", o), ("datatrove", d))}
        ratio = mbps["ours"] / mbps["datatrove"]
        result = (f"{size / 1e6:.0f} MB zh+en jsonl, default recipe, {args.workers} workers: ours "
                  f"{mbps['ours']:.2f} MB/s/core ({o['seconds']:.0f} s, kept {o['records_out']}/{o['records_in']}) vs "
                  f"datatrove {mbps['datatrove']:.2f} MB/s/core ({d['seconds']:.0f} s, kept {d['records_out']}) = "
                  f"{ratio:.2f}x; peak RSS ours {o['peak_rss_mb']:.0f} MB at 1x, {o2['peak_rss_mb']:.0f} MB at 2x "
                  f"({size2 / 1e6:.0f} MB, {o2['seconds']:.0f} s); datatrove {d['peak_rss_mb']:.0f} MB at 1x")
        print(result)
        if not args.no_append:
            append_row(result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
