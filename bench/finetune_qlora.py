"""QLoRA step speed and peak memory: our trainer's path against plain HF + peft + bitsandbytes, same run.

Both: r16 LoRA on every linear layer, nf4 + double quantization, bf16 compute, gradient checkpointing, paged
8-bit AdamW, batch 1, random token rows (all tokens trained), random-init weights of a real shape (speed
depends on shapes, not values). Ours differs in what engine.finetune does: the frozen embeddings and head stay
bf16 (peft upcasts them to fp32), and the loss runs the head in chunks (no full fp32 logits).

    python -m bench.finetune_qlora --device cuda             # Llama-2-7B shape, seq 1024 and 2048
    python -m bench.finetune_qlora --device cpu              # tiny shape smoke run
Targets on an H100: peak ≤ 4.4 GiB at 1024, ≤ 5.0 GiB at 2048, ≥ 1.5× the baseline's tokens/s.
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
LLAMA2_7B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                 intermediate_size=11008, vocab_size=32000)
TINY = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=512, vocab_size=32000)


def ours(path: Path, device: str):
    from engine.finetune.config import FinetuneConfig
    from engine.finetune.model_setup import load_for_training, make_optimizer, trainable_parameters

    config = FinetuneConfig(method="qlora", lora_r=16, lora_alpha=32, grad_checkpointing=True, device=device)
    model = load_for_training(config, path, device, "bf16")
    optimizer = make_optimizer(config, trainable_parameters(model), device)
    return our_train_step(model, optimizer, device)


def baseline(path: Path, device: str):
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(str(path), quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": device}, attn_implementation="sdpa")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()  # or gradient checkpointing silently does nothing
    optimizer = bnb.optim.PagedAdamW8bit([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    return train_step(model, optimizer)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seqs", default="", help="comma-separated sequence lengths (default 1024,2048; CPU 128)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 10 on GPU, 2 on CPU)")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    shape = LLAMA2_7B if gpu else TINY
    seqs = [int(s) for s in (args.seqs or ("1024,2048" if gpu else "128")).split(",")]
    steps = args.steps or (10 if gpu else 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model(shape, Path(tmp) / "model")
        rows = []
        for seq in seqs:
            base = measure(baseline, path, args.device, 1, seq, shape["vocab_size"], steps)
            mine = measure(ours, path, args.device, 1, seq, shape["vocab_size"], steps)
            rows.append((seq, mine, base))
    import bitsandbytes
    import peft
    import transformers

    device_name = torch.cuda.get_device_name() if gpu else f"{platform.processor() or platform.machine()} CPU"
    software = (f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
                f"bitsandbytes {bitsandbytes.__version__}")
    print(f"{'seq':>6} {'ours tok/s':>12} {'HF tok/s':>10} {'ratio':>6} {'ours GiB':>9} {'HF GiB':>7}")
    results = []
    for seq, mine, base in rows:
        ratio = mine["tokens_per_s"] / base["tokens_per_s"]
        print(f"{seq:>6} {mine['tokens_per_s']:>12.1f} {base['tokens_per_s']:>10.1f} {ratio:>6.2f} "
              f"{mine['peak_gib']:>9.2f} {base['peak_gib']:>7.2f}")
        results.append(f"seq {seq}: ours {mine['tokens_per_s']:.0f} tok/s, peak {mine['peak_gib']:.2f} GiB vs HF+peft "
                       f"{base['tokens_per_s']:.0f} tok/s, peak {base['peak_gib']:.2f} GiB = {ratio:.2f}x")
    shape_name = "Llama-2-7B shape" if gpu else "tiny llama shape (smoke)"
    with BENCHMARKS_MD.open("a") as f:
        f.write(f"| {datetime.date.today()} | bench/finetune_qlora.py ({shape_name}, QLoRA r16, bs1) | "
                f"{device_name} | {software} | {'; '.join(results)} |\n")


if __name__ == "__main__":
    main()
