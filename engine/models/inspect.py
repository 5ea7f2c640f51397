"""Describe a model folder or GGUF file without importing torch: fast enough for a page or CLI listing.

Reads config.json, the safetensors headers (shapes give the parameter count) and tokenizer_config.json.
Every failure is a ModelFormatError that names the file and what is wrong with it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# Architectures the whole chain (engine, finetuning, export) handles: the llama family.
SUPPORTED_ARCHS = {"llama", "qwen2", "mistral"}
GGUF_MAGIC = b"GGUF"


class ModelFormatError(ValueError):
    """A model file or folder we cannot use; the message says which file and why."""


@dataclass
class ModelInfo:
    arch: str
    params: int
    context_len: int
    dtype: str
    size_bytes: int
    has_chat_template: bool
    hidden_size: int
    num_layers: int
    vocab_size: int

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: not valid JSON ({e})") from None


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelFormatError(f"{path}: truncated safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ModelFormatError(f"{path}: corrupt safetensors header (length {n})")
        try:
            return json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFormatError(f"{path}: corrupt safetensors header") from None


def inspect_hf_folder(folder: str | Path) -> ModelInfo:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: not a folder")
    config = _read_json(folder / "config.json")
    arch = config.get("model_type", "")
    if arch not in SUPPORTED_ARCHS:
        raise ModelFormatError(
            f"{folder / 'config.json'}: model_type {arch!r} is not supported "
            f"(supported: {', '.join(sorted(SUPPORTED_ARCHS))})"
        )
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ModelFormatError(f"{folder}: no *.safetensors weights")
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer.model").exists():
        raise ModelFormatError(f"{folder}: no tokenizer (tokenizer.json or tokenizer.model)")
    params, dtypes = 0, set()
    for shard in shards:
        for name, meta in _safetensors_header(shard).items():
            if name == "__metadata__":
                continue
            n = 1
            for d in meta["shape"]:
                n *= d
            params += n
            dtypes.add(meta["dtype"])
    tok_cfg_path = folder / "tokenizer_config.json"
    tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.exists() else {}
    has_template = bool(tok_cfg.get("chat_template")) or (folder / "chat_template.jinja").exists()
    return ModelInfo(
        arch=arch,
        params=params,
        context_len=int(config.get("max_position_embeddings", 0)),
        dtype=config.get("torch_dtype") or config.get("dtype") or "/".join(sorted(dtypes)).lower(),
        size_bytes=sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
        has_chat_template=has_template,
        hidden_size=int(config.get("hidden_size", 0)),
        num_layers=int(config.get("num_hidden_layers", 0)),
        vocab_size=int(config.get("vocab_size", 0)),
    )


def check_gguf_file(path: str | Path) -> str:
    """Check a GGUF file's magic and architecture; return the architecture name."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelFormatError(f"{path}: not a GGUF file (bad magic bytes)")
    from gguf import GGUFReader  # numpy only; no torch

    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
    except Exception as e:  # gguf raises assorted errors on truncated files
        raise ModelFormatError(f"{path}: corrupt GGUF ({type(e).__name__}: {e})") from None
    if arch not in SUPPORTED_ARCHS:
        raise ModelFormatError(f"{path}: GGUF architecture {arch!r} is not supported")
    return arch
