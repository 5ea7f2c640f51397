"""Merge a LoRA/QLoRA adapter into its base model and write a plain HF folder: safetensors, tokenizer and
the chat template the run trained with, so it loads anywhere (our engine, llama.cpp export, transformers).

QLoRA adapters are merged into the full-precision base, not the 4-bit one: merging into quantized weights
would round the adapter away.
"""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base_path: str | Path, adapter_path: str | Path, out: str | Path, dtype: str = "auto") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=dtype if dtype == "auto" else
                                                getattr(torch, dtype))
    merged = PeftModel.from_pretrained(base, str(adapter_path)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer_src = adapter_path if (Path(adapter_path) / "tokenizer_config.json").is_file() else base_path
    AutoTokenizer.from_pretrained(str(tokenizer_src)).save_pretrained(out)
    return out
