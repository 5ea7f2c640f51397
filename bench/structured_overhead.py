"""Structured output on the CPU: how much slower is a token decoded under a JSON-schema constraint?

The bundled SmolLM2-135M, batch 1 and batch 16, each turn alternating the two sides on the same prompts:
constrained (one of the engine tests' schemas per request, greedy) against unconstrained decode of the same
prompts for the same number of tokens per request (ignore_eos, max_tokens = what the constrained run made), so
both sides do the same model work and the difference is the grammar: bitmask fill, mask apply, token accept.
Reports median ms per output token of each side and their ratio (target: at most 1.10), plus the compile time
of each test schema with a cold cache. Appends a dated row to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import statistics
import time
from pathlib import Path

import torch

from engine.infer import EngineConfig, LLMEngine, SamplingParams
from engine.infer.structured import StructuredOutput
from engine.infer.structured_grammar import GrammarBackend
from engine.models.bundled import ensure_bundled_hf

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"


def load_cases() -> tuple[dict, list[str]]:
    """The engine tests' schemas and prompts: the numbers are about what the tests prove valid."""
    from tests.engine.test_structured import PROMPTS, SCHEMAS

    return SCHEMAS, PROMPTS


def turn(engine: LLMEngine, prompts: list[str], specs: list[StructuredOutput]) -> tuple[float, float]:
    """One constrained and one free run of the prompts; seconds per output token of each."""
    constrained = [SamplingParams(temperature=0, max_tokens=96, structured_output=s) for s in specs]
    start = time.perf_counter()
    results = engine.generate(prompts, constrained)
    with_grammar = time.perf_counter() - start
    lengths = [len(r.token_ids) for r in results]
    free = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in lengths]
    start = time.perf_counter()
    engine.generate(prompts, free)
    without = time.perf_counter() - start
    return with_grammar / sum(lengths), without / sum(lengths)


def compile_times(engine: LLMEngine, schemas: dict) -> dict[str, float]:
    backend = GrammarBackend(engine.tokenizer, engine.vocab_size, engine.eos_ids)
    times = {}
    for name, schema in schemas.items():
        start = time.perf_counter()
        backend.compile(StructuredOutput.from_schema(schema))
        times[name] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="alternating turns per batch size")
    parser.add_argument("--dtype", default="auto", help="engine dtype on the CPU")
    parser.add_argument("--eager", action="store_true", help="eager decode (no compiled CPU decode graphs)")
    args = parser.parse_args()
    schemas, prompts = load_cases()
    model_dir = ensure_bundled_hf(REPO / ".data" / "test-models")
    config = EngineConfig(device="cpu", dtype=args.dtype, max_model_len=512, enforce_eager=args.eager)
    engine = LLMEngine(str(model_dir), config)
    names = list(schemas)
    engine.generate(prompts[:2], SamplingParams(max_tokens=4))  # warm-up
    rows = []
    for batch in (1, 16):
        chosen = prompts[:batch]
        specs = [StructuredOutput.from_schema(schemas[names[i % len(names)]]) for i in range(batch)]
        turn(engine, chosen, specs)  # compiles the grammars and warms both paths
        samples = [turn(engine, chosen, specs) for _ in range(args.repeat)]
        ms_with = statistics.median(s[0] for s in samples) * 1000
        ms_without = statistics.median(s[1] for s in samples) * 1000
        rows.append(f"bs{batch}: {ms_with:.1f} ms/token constrained vs {ms_without:.1f} free = "
                    f"{ms_with / ms_without:.3f}x")
        print(rows[-1], flush=True)
    compiled = compile_times(engine, schemas)
    compile_text = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in compiled.items())
    print("compile:", compile_text)
    dtype = str(engine.runner.dtype).removeprefix("torch.")
    date = datetime.date.today().isoformat()
    device = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, shared with other work"
    software = f"torch {torch.__version__}, xgrammar {importlib.metadata.version('xgrammar')}"
    mode = "eager" if args.eager else "default decode path"
    result = (f"smollm2-135m {dtype} ({mode}), JSON-schema constraint vs free decode of the same prompts and token "
              f"counts (median of {args.repeat}): " + "; ".join(rows) + f"; cold compile: {compile_text}")
    with BENCHMARKS_MD.open("a", encoding="utf-8") as f:
        f.write(f"| {date} | bench/structured_overhead.py | {device} | {software} | {result} |\n")


if __name__ == "__main__":
    main()
