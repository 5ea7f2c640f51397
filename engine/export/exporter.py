"""The export entry point: merge an adapter if given, write each requested GGUF, verify it with llama.cpp,
and put an Ollama Modelfile beside it.

Everything that can be refused is refused before the first byte is written: architecture, tokenizer, quant
names (including what this llama.cpp build knows), the adapter, and free disk space for all outputs at once.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from engine.export.modelfile import write_modelfile
from engine.export.quant_types import QUANT_TYPES, ExportError, QuantType, estimate_bytes, parse_quants
from engine.export.quantize import llama_ftype, llama_quantize
from engine.export.verify import hf_reference, verify_gguf
from engine.export.vocab import build_vocab
from engine.export.writer import read_config, write_gguf
from engine.models.merge import check_adapter, merge_adapter
from engine.progress import Progress, check_cancel, no_progress


@dataclass
class ExportRequest:
    model_dir: str
    """HF folder of the model to export (the base model when an adapter is given)."""
    quants: str | list[str]
    """Output types, e.g. "f16,q8_0,q4_k_m"."""
    output_dir: str
    """Folder the GGUF files and Modelfiles are written to."""
    adapter_dir: str = ""
    """A PEFT LoRA adapter folder merged into the model first."""
    name: str = ""
    """Base of the file names and the GGUF's general.name (default: the model folder's name)."""
    verify: bool = True
    """Load every file with llama.cpp and compare it with the HF model (lossless types must match)."""
    threads: int = 2
    """CPU threads for llama.cpp (quantize and verification)."""


@dataclass
class ExportedFile:
    quant: str
    path: Path
    size_bytes: int
    modelfile: Path | None = None
    metrics: dict = field(default_factory=dict)


def _param_count(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for shard in folder.glob("*.safetensors"):
        with safe_open(shard, framework="pt") as f:  # "pt": numpy has no bf16
            for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                n = 1
                for d in f.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def ensure_free_space(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ExportError(f"output: not enough free disk space in {folder}: the export needs about "
                          f"{need / 2**30:.2f} GiB, {free / 2**30:.2f} GiB are free")


def _check_inputs(req: ExportRequest) -> list[QuantType]:
    quants = parse_quants(req.quants)
    for q in quants:
        if q.maker == "llama.cpp":
            llama_ftype(q)  # this llama.cpp build must know it
    model_dir = Path(req.model_dir)
    config = read_config(model_dir)
    build_vocab(model_dir, config["vocab_size"])  # tokenizer refusals before any long work
    if req.adapter_dir:
        check_adapter(req.adapter_dir)
    return quants


def _scaled(progress: Progress, start: float, width: float) -> Progress:
    """A stage's own 0..1 progress mapped onto [start, start + width] of the whole export."""
    def report(fraction=None, message=None, metrics=None, step=None) -> None:
        progress(None if fraction is None else start + width * fraction, message, metrics, step)
    return report


def export_gguf(req: ExportRequest, progress: Progress = no_progress, cancel=None) -> list[ExportedFile]:
    quants = _check_inputs(req)
    out_dir = Path(req.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = Path(req.model_dir)
    name = req.name or model_dir.name
    n_params = _param_count(model_dir)
    needs_f16 = any(q.maker == "llama.cpp" for q in quants) and not any(q.name == "f16" for q in quants)
    need = sum(estimate_bytes(n_params, q) for q in quants)
    need += estimate_bytes(n_params, QUANT_TYPES["f16"]) if needs_f16 else 0
    need += n_params * 4 if req.adapter_dir else 0  # the merged folder (at most fp32)
    ensure_free_space(out_dir, need)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as scratch:
        if req.adapter_dir:
            model_dir = merge_adapter(model_dir, req.adapter_dir, Path(scratch) / "merged",
                                      _scaled(progress, 0.0, 0.1))
        files = _write_all(model_dir, quants, out_dir, Path(scratch), name, req.threads, progress, cancel)
        if req.verify:
            _verify_all(model_dir, files, quants, req.threads, progress, cancel)
        chat_template = _chat_template(model_dir)
        for f in files:
            f.modelfile = write_modelfile(f.path, chat_template)
    progress(1.0, f"exported {len(files)} file(s) to {out_dir}")
    return files


def _chat_template(model_dir: Path) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir)).chat_template or ""


def _write_all(model_dir: Path, quants: list[QuantType], out_dir: Path, scratch: Path, name: str, threads: int,
               progress: Progress, cancel) -> list[ExportedFile]:
    """Float and gguf-package types first (the F16 one feeds llama.cpp's K-quants), then K-quants."""
    files, f16_path = [], None
    share = 0.6 / len(quants)  # writing takes 10%..70% of the job, verification the rest
    order = sorted(quants, key=lambda q: q.maker == "llama.cpp")
    for i, q in enumerate(order):
        check_cancel(cancel)
        path = out_dir / f"{name}.{q.name.upper()}.gguf"
        start = 0.1 + i * share
        if q.maker == "llama.cpp":
            if f16_path is None:
                progress(start, "writing the F16 file llama.cpp quantizes from")
                f16_path = write_gguf(model_dir, scratch / f"{name}.F16.gguf", QUANT_TYPES["f16"], name=name,
                                      cancel=cancel)
            progress(start, f"llama.cpp quantizing to {q.name}")
            llama_quantize(f16_path, path, q, threads)
        else:
            write_gguf(model_dir, path, q, name=name, cancel=cancel, progress=_scaled(progress, start, share))
            if q.name == "f16":
                f16_path = path
        files.append(ExportedFile(q.name, path, path.stat().st_size))
    return [f for q in quants for f in files if f.quant == q.name]


def _verify_all(model_dir: Path, files: list[ExportedFile], quants: list[QuantType], threads: int,
                progress: Progress, cancel) -> None:
    progress(0.7, "computing the HF model's reference logits")
    ref = hf_reference(model_dir)
    lossless = {q.name: q.lossless for q in quants}
    for i, f in enumerate(files):
        check_cancel(cancel)
        progress(0.72 + 0.26 * i / len(files), f"verifying {f.path.name} with llama.cpp")
        try:
            f.metrics = verify_gguf(f.path, ref, lossless=lossless[f.quant], threads=threads)
        except ExportError:
            f.path.replace(f.path.with_name(f.path.name + ".rejected"))  # keep it to debug, never to use
            raise
        progress(None, f"{f.quant}: top-1 {f.metrics['top1_agreement']:.3f}, "
                       f"ppl delta {f.metrics['ppl_delta_pct']:+.2f}%",
                 {f"top1_{f.quant}": f.metrics["top1_agreement"], f"ppl_delta_pct_{f.quant}":
                  f.metrics["ppl_delta_pct"]})
