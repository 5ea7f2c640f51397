"""Job kind `selftest`: load a model and generate a few tokens, reporting progress per token.

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


def run(args: SelftestArgs, ctx: JobContext) -> dict:
    import torch
    from transformers import StoppingCriteria

    from app.registry import resolve_model
    from engine.models.loader import load_model
    from engine.progress import check_cancel

    model_row = resolve_model(ctx.root, args.model)
    ctx.progress(0.0, f"loading {model_row.name}")
    model, tokenizer = load_model(model_row.path)
    messages = [{"role": "user", "content": args.prompt}]
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
    else:
        ids = tokenizer(args.prompt, return_tensors="pt")["input_ids"]
    ids = ids.to(model.device)
    started = time.perf_counter()

    class ReportEachToken(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            check_cancel(ctx.cancel)
            n = input_ids.shape[1] - ids.shape[1]
            tps = n / max(time.perf_counter() - started, 1e-6)
            ctx.progress(n / args.max_new_tokens, f"generated {n}/{args.max_new_tokens} tokens",
                         {"tokens_per_s": tps}, step=n)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                             stopping_criteria=[ReportEachToken()], pad_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:]
    text = tokenizer.decode(new, skip_special_tokens=True)
    seconds = time.perf_counter() - started
    ctx.progress(1.0, f"done: {len(new)} tokens in {seconds:.1f}s")
    return {"text": text, "tokens": len(new), "seconds": round(seconds, 3),
            "tokens_per_s": round(len(new) / max(seconds, 1e-6), 2), "device": str(model.device)}


KIND = register(JobKind("selftest", "Self-test: load and generate", SelftestArgs, "jobs.tasks.selftest:run"))
