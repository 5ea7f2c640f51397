"""Merge a PEFT LoRA adapter into its base model and save the result as a plain HF folder.

One merge for every stage: "merge and register" after a finetune, and export (llama.cpp runs one set of
weights, so the adapter is folded in as W + B·A·scale first). QLoRA adapters are merged into the
full-precision base, never the 4-bit one, which would round the adapter away. The tokenizer comes from the
adapter folder when the finetune saved one there (it carries the chat template the run trained with), else
from the base. Written under a .partial name and renamed at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.models.inspect import ModelFormatError
from engine.progress import Progress, no_progress


def check_adapter(adapter_dir: str | Path) -> dict:
    """The adapter's config; ModelFormatError unless it is a PEFT LoRA folder."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise ModelFormatError(f"adapter: {adapter_dir} is not a PEFT adapter folder (no adapter_config.json)")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ModelFormatError(f"adapter: {path} is a {config.get('peft_type')!r} adapter; only LoRA can be merged")
    return config


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path,
                  progress: Progress = no_progress, dtype: str = "auto") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    check_adapter(adapter_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    progress(0.1, f"loading {base_dir.name} with adapter {adapter_dir.name}")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    progress(0.6, "saving the merged model")
    try:
        model.save_pretrained(partial)
        has_tokenizer = any((adapter_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tokenizer_dir = adapter_dir if has_tokenizer else base_dir
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(partial)
        if (base_dir / "generation_config.json").is_file():
            shutil.copy2(base_dir / "generation_config.json", partial / "generation_config.json")
        shutil.rmtree(out_dir, ignore_errors=True)
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(1.0, "merged")
    return out_dir
