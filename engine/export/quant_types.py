"""The GGUF output types we offer, and which tool makes each one.

F32/F16/BF16 are written directly; Q8_0/Q4_0 go through the `gguf` package's own quantizers; K-quants go
through llama.cpp's quantizer (llama-cpp-python) from the F16 file, because `gguf` can only dequantize them
and home-made K-quants would be a second, untested implementation of llama.cpp's format.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExportError(ValueError):
    """An export we refuse or could not finish; the message says which input and why."""


@dataclass(frozen=True)
class QuantType:
    name: str
    """Lower-case name used on the CLI and in file names (upper-cased there), e.g. q4_k_m."""
    maker: str
    """"direct" (float types), "gguf" (the gguf package's quantizer) or "llama.cpp" (llama_model_quantize)."""
    bits_per_weight: float
    """Average storage per weight, for the free-space estimate (K-quants: llama.cpp's published figures)."""
    lossless: bool = False
    """True for float exports: any disagreement with the HF model is a bug, not quantization loss."""


QUANT_TYPES = {q.name: q for q in (
    QuantType("f32", "direct", 32.0, lossless=True),
    QuantType("f16", "direct", 16.0, lossless=True),
    QuantType("bf16", "direct", 16.0, lossless=True),
    QuantType("q8_0", "gguf", 8.5),
    QuantType("q4_0", "gguf", 4.5),
    QuantType("q2_k", "llama.cpp", 2.96),
    QuantType("q3_k_m", "llama.cpp", 3.91),
    QuantType("q4_k_s", "llama.cpp", 4.58),
    QuantType("q4_k_m", "llama.cpp", 4.89),
    QuantType("q5_k_s", "llama.cpp", 5.54),
    QuantType("q5_k_m", "llama.cpp", 5.69),
    QuantType("q6_k", "llama.cpp", 6.59),
)}


def parse_quants(text: str | list[str]) -> list[QuantType]:
    """"f16,q8_0" or ["f16", "q8_0"] -> quant types, in the given order, without repeats."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise ExportError("quant: give at least one type, e.g. f16,q8_0,q4_k_m")
    unknown = [n for n in names if n not in QUANT_TYPES]
    if unknown:
        raise ExportError(f"quant: unknown type(s) {', '.join(unknown)} (known: {', '.join(QUANT_TYPES)})")
    return [QUANT_TYPES[n] for n in dict.fromkeys(names)]


def estimate_bytes(n_params: int, quant: QuantType) -> int:
    """A generous size estimate: weights at the type's rate plus 3% and 16 MB for norms, vocab and padding."""
    return int(n_params * quant.bits_per_weight / 8 * 1.03) + 16 * 2**20
