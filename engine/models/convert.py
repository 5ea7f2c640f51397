"""Turn a GGUF file into a plain HF safetensors folder, once, so every stage loads one format.

transformers dequantizes GGUF on load, but a model loaded that way refuses save_pretrained until its
quantizer config is removed. The folder is written under a temporary name and renamed at the end, so a
crash never leaves a half-written model behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.models.inspect import check_gguf_file
from engine.progress import Progress, no_progress


def gguf_to_hf(gguf_path: str | Path, out_dir: str | Path, progress: Progress = no_progress) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    check_gguf_file(gguf_path)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    progress(0.05, f"reading {gguf_path.name}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    progress(0.2, "dequantizing weights")
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    progress(0.7, "writing safetensors")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    progress(1.0, f"converted to {out_dir}")
    return out_dir
