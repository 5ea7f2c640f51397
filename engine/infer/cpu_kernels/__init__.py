"""The engine's hand-written CPU kernels (C++), built on first use for this machine and cached on disk.

Torch ops are fine where a step's arithmetic is large; a batch-1 decode step is many small pieces of work, and
dispatching a dozen torch ops per layer for its attention cost more than the attention itself. The kernels
here do such a piece in one call. They are compiled with the host's own instruction set (-march=native), so
the build folder is keyed by the source, torch and the CPU; a machine without a C++ compiler keeps the torch
ops (`available()` is False and the engine says so in its log).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

NAME = "inkstone_cpu_kernels"
SOURCES = [Path(__file__).with_name(name) for name in ("paged_decode.cpp", "linear_f16.cpp", "linear_bf16.cpp",
                                                       "rows.cpp", "norm_act.cpp")]
HEADERS = [Path(__file__).with_name("common.h")]
# -ffast-math lets the compiler vectorize exp (glibc's vector math) and the dot products' reductions; the kernels
# have no inf or NaN to keep (scores are finite, padding rows attend to nothing), except the sampler's row checks,
# which read finiteness from the bits (rows.cpp).
# ATen's thread pool is OpenMP on Linux, and at::parallel_for inlines its pragma.
CFLAGS = ["-O3", "-march=native", "-ffast-math", *(["-fopenmp"] if sys.platform == "linux" else [])]


def _cpu_key() -> str:
    """What the compiled code depends on besides its source: torch, the compiler target and the CPU's features."""
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith(("flags", "Features"))), "")
    text = "|".join([torch.__version__, sys.version, platform.machine(), platform.processor(), flags, *CFLAGS,
                     *(p.read_text() for p in [*SOURCES, *HEADERS])])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_dir() -> Path:
    root = Path(os.environ.get("INKSTONE_CPU_KERNELS_DIR") or Path.home() / ".cache" / "inkstone" / "cpu_kernels")
    return root / _cpu_key()


@functools.cache
def available() -> bool:
    """Build (once per machine and source) and load the kernels; False, logged, where that fails."""
    if os.environ.get("INKSTONE_NO_CPU_KERNELS"):
        return False
    folder = build_dir()
    library = folder / f"{NAME}.so"
    try:
        if library.exists():  # the folder is keyed by the source: a library there is this source's, so load it
            torch.ops.load_library(str(library))
        else:
            _build(folder)
    except Exception as exc:  # no compiler, headers missing: the torch ops still work, only slower
        log.warning("CPU kernels unavailable, decode attention stays in torch ops: %s", exc)
        return False
    # What a compiled graph needs to trace through the op: its output's shape, dtype and device.
    torch.library.register_fake("inkstone_cpu::paged_decode")(_paged_decode_fake)
    torch.library.register_fake("inkstone_cpu::linear_f16w")(_linear_f16w_fake)
    torch.library.register_fake("inkstone_cpu::linear_bf16")(_linear_bf16_fake)
    return True


def _build(folder: Path) -> None:
    from torch.utils import cpp_extension

    log.info("building the CPU kernels for this machine in %s (once, about a minute)", folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Built in a folder of its own and renamed into place when linked: a process starting meanwhile finds the
    # library whole or not at all (and then builds its own), never half-written.
    work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    try:
        cpp_extension.load(name=NAME, sources=[str(s) for s in SOURCES], extra_cflags=CFLAGS,
                           extra_ldflags=["-fopenmp"] if sys.platform == "linux" else [], build_directory=str(work),
                           is_python_module=False, verbose=False)
        os.replace(work / f"{NAME}.so", folder / f"{NAME}.so")  # loaded already; the mapping outlives the name
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _paged_decode_fake(q, key, value, kv_cache, layer, slot_mapping, seq_lens, block_tables, scale):
    return torch.empty_like(q)


def _linear_f16w_fake(x, packed, bias, out_features):
    return x.new_empty(*x.shape[:-1], out_features)


def _linear_bf16_fake(x, w, bias):
    return x.new_empty(*x.shape[:-1], w.shape[0])


PACK_GROUP = 8
"""Output rows per group of the packed fp16 weight layout (linear_f16.cpp says why it is packed)."""


def pack_f16w(weight: torch.Tensor) -> torch.Tensor:
    """A weight [out, in] as linear_f16w reads it: fp16, [ceil(out / 8), in, 8], each group of 8 output rows stored
    k-major (the last group zero-padded)."""
    out_features, in_features = weight.shape
    groups = -(-out_features // PACK_GROUP)
    padded = torch.zeros(groups * PACK_GROUP, in_features, dtype=torch.float16)
    padded[:out_features] = weight.detach()
    return padded.view(groups, PACK_GROUP, in_features).transpose(1, 2).contiguous()


def linear_f16w(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, out_features: int) -> torch.Tensor:
    """x [..., in] fp32 times a weight packed by pack_f16w (+ bias [out] fp32) -> [..., out] fp32, accumulated in
    fp32."""
    return torch.ops.inkstone_cpu.linear_f16w(x, packed, bias, out_features)


@functools.cache
def linear_bf16_max_rows() -> int:
    """Rows of x up to which linear_bf16 streams the weight itself (0 where the library was built for a CPU
    without AVX512-BF16); past them it is ATen's linear."""
    return torch.ops.inkstone_cpu.linear_bf16_max_rows()


def linear_bf16(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [..., in] bf16 times w [out, in] bf16 (+ bias [out] bf16) -> [..., out] bf16, accumulated in fp32."""
    return torch.ops.inkstone_cpu.linear_bf16(x, w, bias)


def paged_decode(q, key, value, kv_cache, layer: int, slot_mapping, seq_lens, block_tables, scale: float):
    """Store key/value [B, Hkv, D] at slot_mapping (-1: skip) in layer `layer` of kv_cache
    [2, layers, blocks, block_size, Hkv, D], then attend q [B, H, D] over each sequence's cached context
    (seq_lens [B] int32, 0 for a padding row; block_tables [B, W] int32) -> [B, H, D]."""
    return torch.ops.inkstone_cpu.paged_decode(q, key, value, kv_cache, layer, slot_mapping, seq_lens,
                                               block_tables, scale)


def rows_finite(logits: torch.Tensor) -> torch.Tensor:
    """[B] bool: whether each row of logits [B, V] (fp32, contiguous) holds only finite values."""
    return torch.ops.inkstone_cpu.rows_finite(logits)


def rows_argmax(logits: torch.Tensor) -> torch.Tensor:
    """[B] int64: each row's first index of its largest value, as torch.argmax gives it for rows without NaN."""
    return torch.ops.inkstone_cpu.rows_argmax(logits)


def eager_only(kernel: Callable, traced: Callable) -> Callable:
    """kernel when called eagerly; traced (the same arithmetic in torch ops) while torch.compile traces a graph, so
    that inductor fuses it with its neighbours there instead of calling out to the kernel."""
    def call(*args):
        if torch.compiler.is_compiling():
            return traced(*args)
        return kernel(*args)

    return call


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """layers.norm.rms_norm for fp32 x [T, H] in one pass."""
    return torch.ops.inkstone_cpu.rms_norm(x, weight, eps)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """layers.norm.add_rms_norm for fp32 x, residual [T, H]: (rms_norm(residual + x), residual + x)."""
    return torch.ops.inkstone_cpu.add_rms_norm(x, residual, weight, eps)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """layers.activation.silu_and_mul for fp32 x [T, 2I] -> [T, I]."""
    return torch.ops.inkstone_cpu.silu_and_mul(x)


def rotary(cos_sin: torch.Tensor, positions: torch.Tensor, q: torch.Tensor,
           k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """layers.rotary.apply_rotary for fp32 q [T, H, D], k [T, Hkv, D] (each token's heads contiguous)."""
    return torch.ops.inkstone_cpu.rotary(cos_sin, positions, q, k)
