"""Agent benchmarks on the bundled model: BFCL v4 categories, GSM8K with the Python tool and ToolTalk's easy set.

Runs each agent task of the evaluation stage (engine/eval/tasks/agent.py) exactly as `inkstone eval` does — the
Evaluator over one EngineBackend, the model's own chat template and tool-call parsing, greedy — on the first
`--limit` items of each, and reports every metric with its standard error and items per second. There is no
other harness to race here (BFCL's and ToolTalk's own runners need a hosted model); the row records where the
bundled model stands on each benchmark and what a run costs, so later changes to the loops, the tool-call
grammar or the engine show up against it. Model loading is timed apart.

    .venv/bin/python -m bench.agent_bench --limit 20

Appends a dated row per task to docs/benchmarks.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
TASKS = ("bfcl_simple", "bfcl_multiple", "bfcl_parallel", "bfcl_parallel_multiple", "bfcl_irrelevance",
         "gsm8k_tool", "tooltalk_easy")


def _metric(name: str, m: dict) -> str:
    stderr = f" ± {m['stderr']:.3f}" if not math.isnan(m["stderr"]) else ""
    return f"{name} {m['value']:.3f}{stderr} (n {m['n']})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=20, help="items of each task (ToolTalk: conversations)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated agent tasks")
    p.add_argument("--dtype", default="float32", help="model dtype (float32 on the CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads (1 on a machine busy with other work: 2 stall under load)")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = p.parse_args()
    import torch
    import transformers

    from engine.eval.backends import EngineBackend
    from engine.eval.config import EvalConfig
    from engine.eval.runner import Evaluator
    from engine.eval.tasks import get_task
    from engine.models.bundled import ensure_bundled_hf

    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    for name in names:
        if get_task(name).kind != "agent":
            raise SystemExit(f"--tasks: {name} is not an agent benchmark (agent tasks: {', '.join(TASKS)})")
    torch.set_num_threads(args.threads)
    model_dir = ensure_bundled_hf(REPO / ".data" / "test-models")
    started = time.perf_counter()
    backend = EngineBackend(str(model_dir), dtype=args.dtype, device=args.device)
    load_s = time.perf_counter() - started
    rows = []
    for name in names:
        cfg = EvalConfig(model=str(model_dir), tasks=name, limit=args.limit, dtype=args.dtype, device=args.device)
        started = time.perf_counter()
        [result] = Evaluator(cfg, backend).run()["tasks"]
        seconds = time.perf_counter() - started
        n = len(result.samples)
        line = "; ".join(_metric(k, m) for k, m in result.metrics.items())
        rows.append((name, n, line, n / seconds, seconds))
        print(f"{name}: {n} items in {seconds:.1f}s ({n / seconds:.3f}/s): {line}", flush=True)
    print(f"model load: {load_s:.1f}s (not counted above)")
    if args.no_record:
        return
    today = datetime.date.today().isoformat()
    load = os.getloadavg()[0]
    head = (f"| {today} | bench/agent_bench.py --limit {args.limit} (smollm2-135m-instruct, {args.dtype}, greedy, "
            f"the eval stage's agent tasks; load average {load:.1f} at the end) | {platform.machine()}, "
            f"{os.cpu_count()} cores, {args.threads} threads ({platform.system()}, {args.device}) | "
            f"torch {torch.__version__}, transformers {transformers.__version__} | ")
    lines = [f"{head}{name}, {n} items: {line}; {rate:.3f} items/s ({seconds:.0f} s) |"
             for name, n, line, rate, seconds in rows]
    with (REPO / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
