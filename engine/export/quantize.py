"""K-quants (Q4_K_M, Q5_K_M, Q6_K, …) made by llama.cpp's own quantizer, from our F16 GGUF.

The `gguf` package cannot make K-quants, and a second implementation of llama.cpp's format would be a
liability, so this calls llama_model_quantize through llama-cpp-python. It also picks llama.cpp's per-tensor
mix (e.g. Q6_K for some ffn_down rows in Q4_K_M) and falls back for rows that do not split into 256-blocks.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from engine.export.quant_types import ExportError, QuantType


def llama_ftype(quant: QuantType) -> int:
    """llama.cpp's file type for quant; ExportError when this llama.cpp build does not know it."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(f"quant: {quant.name} needs llama-cpp-python (pip install llama-cpp-python)") from None
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.name.upper()}", None)
    if ftype is None:
        raise ExportError(f"quant: llama.cpp {llama_cpp.__version__} does not know {quant.name}")
    return int(ftype)


def llama_quantize(f16_path: str | Path, out: str | Path, quant: QuantType, threads: int = 0) -> Path:
    """Quantize an F16 GGUF into out (written as .partial, renamed when llama.cpp reports success)."""
    import llama_cpp

    ftype = llama_ftype(quant)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    try:
        rc = llama_cpp.llama_model_quantize(str(f16_path).encode(), str(partial).encode(), ctypes.byref(params))
        if rc != 0:
            raise ExportError(f"llama.cpp could not quantize {f16_path} to {quant.name} (code {rc})")
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out
