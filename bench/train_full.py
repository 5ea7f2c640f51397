"""Full-finetune step speed (MFU): our trainer's path against plain HF + SDPA + fused AdamW, same run.

Ours: fp32 master weights, bf16 autocast, fused AdamW, chunked loss on trained tokens (engine.finetune).
Baseline: the model in bf16, SDPA attention, `model(labels=…)` loss, fused AdamW — the GPU-NOTES setup that
measured 46% MFU. TinyLlama-1.1B shape, seq 2048, batch 4, random-init weights, random token rows.

    python -m bench.train_full --device cuda     # target: ours ≥ 60% MFU on an H100
    python -m bench.train_full --device cpu      # tiny shape smoke run (no MFU on the CPU)
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
from pathlib import Path

import torch

from bench.train_common import measure, our_train_step, train_step, write_model

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
TINYLLAMA = dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                 intermediate_size=5632, vocab_size=32000)
TINY = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=512, vocab_size=32000)


def ours(path: Path, device: str):
    from engine.finetune.config import FinetuneConfig
    from engine.finetune.model_setup import load_for_training, make_optimizer, trainable_parameters

    config = FinetuneConfig(method="full", grad_checkpointing=False, device=device)
    precision = "bf16" if device.startswith("cuda") else "fp32"
    model = load_for_training(config, path, device, precision)
    optimizer = make_optimizer(config, trainable_parameters(model), device)
    return our_train_step(model, optimizer, device)


def baseline(path: Path, device: str):
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation="sdpa").to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.startswith("cuda"))
    return train_step(model, optimizer)


def main() -> None:
    from engine.finetune.throughput import flops_per_token, peak_flops
    from engine.finetune.vram_planner import ModelShape

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 10 on GPU, 2 on CPU)")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    shape = TINYLLAMA if gpu else TINY
    batch, seq, steps = (4, 2048, args.steps or 10) if gpu else (2, 128, args.steps or 2)
    s = ModelShape(shape["hidden_size"], shape["num_hidden_layers"], shape["num_attention_heads"],
                   shape["num_key_value_heads"], shape["intermediate_size"], shape["vocab_size"])
    token_flops = flops_per_token(s.params, s.layers, s.hidden, seq, full=True)
    peak = peak_flops(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model(shape, Path(tmp) / "model")
        base = measure(baseline, path, args.device, batch, seq, shape["vocab_size"], steps)
        mine = measure(ours, path, args.device, batch, seq, shape["vocab_size"], steps)
    import transformers

    ratio = mine["tokens_per_s"] / base["tokens_per_s"]
    mfu = {k: (v["tokens_per_s"] * token_flops / peak if peak else float("nan")) for k, v in
           (("ours", mine), ("base", base))}
    print(f"{'':>6} {'tok/s':>10} {'MFU':>6}")
    print(f"{'ours':>6} {mine['tokens_per_s']:>10.1f} {mfu['ours']:>6.1%}")
    print(f"{'HF':>6} {base['tokens_per_s']:>10.1f} {mfu['base']:>6.1%}")
    print(f"ratio {ratio:.2f}x")
    device_name = torch.cuda.get_device_name() if gpu else f"{platform.processor() or platform.machine()} CPU"
    name = "TinyLlama-1.1B shape, seq 2048, bs4" if gpu else "tiny llama shape (smoke), seq 128, bs2"
    with BENCHMARKS_MD.open("a") as f:
        f.write(f"| {datetime.date.today()} | bench/train_full.py ({name}) | {device_name} | "
                f"torch {torch.__version__}, "
                f"transformers {transformers.__version__} | ours {mine['tokens_per_s']:.0f} tok/s (MFU "
                f"{mfu['ours']:.1%}) vs HF+SDPA+AdamW {base['tokens_per_s']:.0f} tok/s (MFU {mfu['base']:.1%}) "
                f"= {ratio:.2f}x |\n")


if __name__ == "__main__":
    main()
