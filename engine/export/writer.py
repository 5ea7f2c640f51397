"""Write an HF llama-family folder as one GGUF file, streaming tensor by tensor from its safetensors.

Two passes: the safetensors headers give every tensor's shape, so the GGUF header (metadata, tokenizer,
tensor table) is written before any weight is read; then each tensor is read, re-laid out, converted and
appended alone. Peak memory is one tensor in float32 plus its converted copy, whatever the model size. The
file is written under a .partial name and renamed only when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.export.quant_types import ExportError, QuantType
from engine.export.tensors import GGUF_ARCH, gguf_name, llama3_rope_factors, transform
from engine.export.vocab import add_vocab, build_vocab
from engine.progress import Progress, check_cancel, no_progress

FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}


@dataclass
class _Planned:
    hf_name: str
    name: str
    shape: tuple[int, ...]
    qtype: object  # gguf.GGMLQuantizationType of the stored data
    shard: Path | None  # None for tensors we compute (rope_freqs)


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ExportError(f"{folder}: not an HF model folder (no config.json)")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("model_type") not in GGUF_ARCH:
        raise ExportError(f"{path}: model_type {config.get('model_type')!r} cannot be exported to GGUF "
                          f"(supported: {', '.join(sorted(GGUF_ARCH))})")
    return config


def _rope(config: dict) -> tuple[dict, float]:
    """(rope scaling parameters, theta) from either transformers 5's rope_parameters or older rope_scaling."""
    rope = dict(config.get("rope_scaling") or {})
    rope.update(config.get("rope_parameters") or {})
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind not in ("default", "linear", "llama3"):
        raise ExportError(f"config.json: rope scaling {kind!r} is not supported for export "
                          "(supported: default, linear, llama3)")
    rope["rope_type"] = kind
    return rope, float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def _head_dim(config: dict) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def _stored_type(shape: tuple[int, ...], quant: QuantType):
    """1-D tensors stay F32 (as llama.cpp wants); rows that do not split into blocks fall back to F16."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(shape) < 2 or quant.name == "f32":
        return GGMLQuantizationType.F32
    qtype = GGMLQuantizationType[quant.name.upper()]
    if shape[-1] % GGML_QUANT_SIZES[qtype][0]:
        return GGMLQuantizationType.F16
    return qtype


def _file_order(p: _Planned) -> tuple[int, str]:
    """llama.cpp's usual order: embeddings and rope factors, the blocks by number, then the head."""
    if p.name.startswith("blk."):
        return int(p.name.split(".")[1]), p.name
    return (-1 if p.name in ("token_embd.weight", "rope_freqs.weight") else 10**9), p.name


def _plan(folder: Path, config: dict, quant: QuantType) -> list[_Planned]:
    from safetensors import safe_open

    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ExportError(f"{folder}: no *.safetensors weights")
    planned = []
    for shard in shards:
        with safe_open(shard, framework="pt") as f:
            for hf_name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                name = gguf_name(hf_name)
                if name is None or (name == "output.weight" and config.get("tie_word_embeddings")):
                    continue  # tied output: llama.cpp reuses token_embd
                shape = tuple(f.get_slice(hf_name).get_shape())
                planned.append(_Planned(hf_name, name, shape, _stored_type(shape, quant), shard))
    if _rope(config)[0]["rope_type"] == "llama3":
        shape = (_head_dim(config) // 2,)
        planned.append(_Planned("", "rope_freqs.weight", shape, _stored_type(shape, quant), None))
    planned.sort(key=_file_order)
    return planned


def _add_metadata(writer, folder: Path, config: dict, quant: QuantType, name: str) -> None:
    import gguf

    rope, theta = _rope(config)
    heads, head_dim = config["num_attention_heads"], _head_dim(config)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_file_type(FILE_TYPE[quant.name])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(theta)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    add_vocab(writer, folder, build_vocab(folder, config["vocab_size"]))


def _read(p: _Planned, config: dict) -> np.ndarray:
    from safetensors import safe_open

    if p.shard is None:
        rope, theta = _rope(config)
        return llama3_rope_factors(rope, theta, _head_dim(config))
    with safe_open(p.shard, framework="pt") as f:  # torch reads bf16, which numpy cannot
        data = f.get_tensor(p.hf_name).float().numpy()
    heads = config["num_attention_heads"]
    return transform(p.name, data, config["model_type"], heads, config.get("num_key_value_heads") or heads)


def _convert(data: np.ndarray, qtype) -> np.ndarray:
    from gguf import GGMLQuantizationType, quants

    if qtype == GGMLQuantizationType.F32:
        return data.astype(np.float32, copy=False)
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return quants.quantize(data, qtype)  # BF16, Q8_0, Q4_0: gguf's reference quantizers


def write_gguf(folder: str | Path, out: str | Path, quant: QuantType, *, name: str = "",
               progress: Progress = no_progress, cancel=None) -> Path:
    """Write folder as a GGUF of a float type or a gguf-package quant; returns the final path."""
    import gguf

    if quant.maker == "llama.cpp":
        raise ExportError(f"quant: {quant.name} is made by llama.cpp's quantizer from an F16 file")
    folder, out = Path(folder), Path(out)
    config = read_config(folder)
    planned = _plan(folder, config, quant)
    writer = gguf.GGUFWriter(path=None, arch=GGUF_ARCH[config["model_type"]])
    _add_metadata(writer, folder, config, quant, name or folder.name)
    for p in planned:
        nbytes = int(np.prod(gguf.quant_shape_to_byte_shape(p.shape, p.qtype)))  # any type, in bytes
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), nbytes, raw_dtype=p.qtype)
    partial = out.with_name(out.name + ".partial")
    try:
        writer.write_header_to_file(partial)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for i, p in enumerate(planned):
            check_cancel(cancel)
            writer.write_tensor_data(_convert(_read(p, config), p.qtype))
            progress((i + 1) / len(planned), f"{quant.name}: {p.name}")
        writer.close()
        partial.replace(out)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return out
