"""Compiled CPU decode: one torch.compile'd graph per decode batch-size bucket, the CPU's answer to CUDA graphs.

A batch-1 decode step of a small model is hundreds of tiny ops; run eagerly, dispatching them costs more than
the arithmetic (and than reading the weights, which is what bounds the step). Inductor turns each decode step
into C++ kernels with RMSNorm, rotary and SiLU-mul fused, called from one wrapper. Shapes are fixed per bucket
(`dynamic=False`): a step pads its batch up to the next bucket, and the paged-attention op (the C++ kernel of
engine/infer/cpu_kernels), opaque to the compiler, reads each row's context length from a tensor, so the same
graph serves every length. Inductor's FX graph cache (under `cache_dir`) keeps the compiled code between runs:
the first compile of a model and bucket takes minutes on a small CPU, a later start seconds. Prefill stays
eager: its matmuls are large enough that per-op overhead does not matter.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import types
from collections.abc import Callable

import torch

from engine.infer.layers.attention import AttentionMetadata, StaticDecodePlan

log = logging.getLogger(__name__)

# Few buckets, because each costs a compile (~3 minutes on 2 cores the first time, then from the disk cache).
# Batch-1 decode on a CPU is bound by reading the weights, which a padded row shares with the real ones, but at
# 8-16 rows the matmuls' arithmetic counts too: 8 sequences took 46.5 ms a step in bucket 8 against 71.9 ms
# padded to 16 (the bundled model, 2-core EPYC, alternating). Past 16 rows per-op overhead matters less and
# steps run eagerly.
CPU_GRAPH_BATCH_SIZES = [1, 4, 8, 16]

CompileProgress = Callable[[float | None, str], None]
"""(fraction done or None, message): what the graphs report when a compile starts and ends."""


def use_cache_dir(cache_dir: str | None) -> None:
    """Point inductor's on-disk caches (FX graph cache, compiled C++) at cache_dir; None keeps torch's default
    (a folder under /tmp, lost on reboot)."""
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    torch._inductor.config.fx_graph_cache = True
    # Every engine in a process adds a variant of the same traced function; keep them all compiled.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)


class CpuDecodeGraphs:
    """Compiled decode steps for the buckets up to max_batch. A bucket compiles in a background thread the first
    time a step needs it (that step and the ones after it run eagerly until the graph is ready), so no request
    ever waits for a compile; warm_up compiles in the caller's thread instead."""

    def __init__(self, model: torch.nn.Module, max_batch: int, max_blocks_per_seq: int, cache_dir: str | None):
        use_cache_dir(cache_dir)
        self.model = model
        self.sizes = sorted({min(b, max_batch) for b in CPU_GRAPH_BATCH_SIZES})
        self.max_blocks_per_seq = max_blocks_per_seq
        self.compiled: dict[int, Callable] = {}
        self.buffers: dict[int, dict[str, torch.Tensor]] = {}
        self.failed: set[int] = set()
        self.progress: CompileProgress | None = None
        """Told about each compile (besides the log); set by whoever shows the user what the engine does."""
        self._lock = threading.Lock()
        self._queue: list[int] = []
        self._worker: threading.Thread | None = None

    def bucket(self, batch: int) -> int | None:
        """The smallest bucket that holds batch decodes, or None past the largest."""
        return next((b for b in self.sizes if b >= batch), None)

    def warm_up(self, sizes: list[int] | None = None) -> None:
        """Compile the buckets (default: all) now, in this thread (from the disk cache where it has them)."""
        for bucket in sizes or self.sizes:
            if bucket not in self.compiled and bucket not in self.failed:
                self._compile(bucket)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the background compiles asked for so far are done (or timeout seconds passed)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor,
            meta: AttentionMetadata) -> torch.Tensor | None:
        """Final hidden states [n, hidden] of a decode-only step of n sequences, or None when its bucket's graph
        is not ready (its compile is then started in the background) and the caller must run the step eagerly."""
        n = input_ids.shape[0]
        bucket = self.bucket(n)
        if bucket is None or bucket in self.failed:
            return None
        if bucket not in self.compiled:
            self._compile_in_background(bucket)
            return None
        buf = self.buffers[bucket]
        tables = meta.decode_block_tables
        buf["input_ids"][:n] = input_ids
        buf["positions"][:n] = positions
        buf["slot_mapping"][:n] = meta.slot_mapping
        buf["seq_lens"][:n] = meta.decode_seq_lens
        buf["block_tables"][:n, :tables.shape[1]] = tables
        if n < bucket:  # rows past n must neither write over a slot an earlier step gave them nor attend
            buf["slot_mapping"][n:] = -1
            buf["seq_lens"][n:] = 0
        return self.compiled[bucket](buf)[:n]

    def _compile_in_background(self, bucket: int) -> None:
        with self._lock:
            if bucket in self._queue:
                return
            self._queue.append(bucket)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="inkstone-cpu-compile", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                bucket = self._queue[0]
            self._compile(bucket)
            with self._lock:
                self._queue.pop(0)

    def _compile(self, bucket: int) -> None:
        buf = self._buffers(bucket)
        model = self.model

        def decode_step(b: dict[str, torch.Tensor]) -> torch.Tensor:
            meta = AttentionMetadata(
                slot_mapping=b["slot_mapping"], num_decodes=bucket, decode_seq_lens=b["seq_lens"],
                decode_block_tables=b["block_tables"], prefill_cu_seqlens_q=b["seq_lens"],
                prefill_seq_lens=b["seq_lens"], prefill_block_tables=b["block_tables"],
                static_decode=StaticDecodePlan(b["seq_lens"], b["block_tables"]))
            return model(b["input_ids"], b["positions"], meta)

        message = f"compiling the CPU decode step for batch size {bucket} (minutes the first time, then cached)"
        log.info(message)
        if self.progress is not None:
            self.progress(None, message)
        start = time.monotonic()
        # Checking dynamo's guards on every parameter of the model cost ~2 ms a step. This function is compiled
        # for one model and one bucket and always called with the same buffers, so it needs no guards; a code
        # object of its own keeps its compiled graph apart from every other engine's and bucket's.
        own_code = decode_step.__code__.replace(co_name=f"decode_step_{id(self)}_{bucket}")
        decode_step = types.FunctionType(own_code, decode_step.__globals__, own_code.co_name,
                                         decode_step.__defaults__, decode_step.__closure__)
        try:
            # cpp_wrapper: the graph's kernels are called from generated C++ rather than a Python wrapper, which
            # took ~1-1.5 ms off a 12 ms batch-1 step of the bundled model (2-core EPYC, measured alternately).
            compiled = torch.compile(decode_step, dynamic=False, fullgraph=True,
                                     options={"guard_filter_fn": torch.compiler.skip_all_guards_unsafe,
                                              "cpp_wrapper": True})
            with torch.inference_mode():
                compiled(buf)  # padding rows only: nothing is stored, the output is dropped
        except Exception as exc:  # no C++ compiler, an unsupported op: this bucket stays eager
            log.warning("CPU decode for batch size %d stays eager: compiling failed: %s", bucket, exc)
            self.failed.add(bucket)
            return
        message = f"CPU decode step for batch size {bucket} compiled in {time.monotonic() - start:.0f} s"
        log.info(message)
        if self.progress is not None:
            self.progress(None, message)
        self.buffers[bucket] = buf
        self.compiled[bucket] = compiled

    def _buffers(self, bucket: int) -> dict[str, torch.Tensor]:
        # Padding rows: token 0 at position 0, not stored (slot -1), attending to nothing (length 0).
        return dict(
            input_ids=torch.zeros(bucket, dtype=torch.long),
            positions=torch.zeros(bucket, dtype=torch.long),
            slot_mapping=torch.full((bucket,), -1, dtype=torch.long),
            seq_lens=torch.zeros(bucket, dtype=torch.int32),
            block_tables=torch.zeros(bucket, self.max_blocks_per_seq, dtype=torch.int32),
        )
