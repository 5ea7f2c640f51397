"""Job kind `selftest`: load a model into our inference engine and generate, reporting progress per token.

It proves the whole path end to end (queue → worker process → engine → progress rows → UI) in seconds on a
CPU with the bundled model, and doubles as a warm-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from jobs.context import JobContext
from jobs.kinds import JobKind, register


@dataclass
class SelftestArgs:
    model: str = "smollm2-135m-instruct"
    """Registered model name or id."""
    prompt: str = "Write one sentence about ink stones."
    """User message sent through the model's chat template."""
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 32
    """Tokens to generate (greedy)."""
    device: str = "auto"
    """"auto" (CUDA when present) or "cpu"."""


def run(args: SelftestArgs, ctx: JobContext) -> dict:
    from app.registry import resolve_model
    from engine.infer import EngineConfig, LLMEngine, SamplingParams
    from engine.progress import check_cancel

    model_row = resolve_model(ctx.root, args.model, ctx.progress)  # the bundled model is set up on first use
    ctx.progress(0.0, f"loading {model_row.name}")
    # A small KV budget: one short request needs a few MB, and the self-test must not grab the machine.
    engine = LLMEngine(model_row.path, EngineConfig(device=args.device, cpu_kv_cache_gb=0.25,
                                                    gpu_memory_utilization=0.3))
    tokenizer = engine.tokenizer
    messages = [{"role": "user", "content": args.prompt}]
    prompt = (tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
              if tokenizer.chat_template else args.prompt)
    # Fit the request in the model's context rather than refuse it: this is a smoke test, not a benchmark.
    budget = min(args.max_new_tokens, engine.max_model_len - len(tokenizer.encode(prompt)))
    engine.add_request(prompt, SamplingParams(temperature=0.0, max_tokens=budget))
    started, text, tokens = time.perf_counter(), "", 0
    while engine.has_unfinished_requests():
        check_cancel(ctx.cancel)
        for out in engine.step():
            text += out.new_text
            tokens = out.num_output_tokens
        tps = tokens / max(time.perf_counter() - started, 1e-6)
        ctx.progress(tokens / budget, f"generated {tokens}/{budget} tokens",
                     {"tokens_per_s": tps}, step=tokens)
    seconds = time.perf_counter() - started
    ctx.progress(1.0, f"done: {tokens} tokens in {seconds:.1f}s")
    return {"text": text, "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / max(seconds, 1e-6), 2), "device": str(engine.runner.device)}


KIND = register(JobKind("selftest", "Self-test: load and generate", SelftestArgs, "jobs.tasks.selftest:run"))
