"""Compiled CPU decode: one torch.compile'd graph per decode batch-size bucket, the CPU's answer to CUDA graphs.

A batch-1 decode step of a small model is hundreds of tiny ops; run eagerly, dispatching them costs more than
the arithmetic (and than reading the weights, which is what bounds the step). Inductor turns each decode step
into C++ kernels with RMSNorm, rotary and SiLU-mul fused, called from one wrapper. Shapes are fixed per bucket
(`dynamic=False`): a step pads its batch up to the next bucket, and the paged-attention op, opaque to the
compiler, reads this step's context length from a tensor, so the same graph serves every length. Inductor's
FX graph cache (under `cache_dir`) keeps the compiled code between runs: the first compile of a model and bucket
takes minutes on a small CPU, a later start seconds. Prefill stays eager: its matmuls are large enough that
per-op overhead does not matter.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import torch

from engine.infer.layers.attention import AttentionMetadata, DecodeGather, StaticDecodePlan

log = logging.getLogger(__name__)

# Few buckets, because each costs a compile: decode on a CPU is bound by reading the weights, which a padded row
# shares with the real ones, so padding a batch of 5 up to 16 costs little; past 16 rows per-op overhead matters
# less and steps run eagerly.
CPU_GRAPH_BATCH_SIZES = [1, 4, 16]

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

    def __init__(self, model: torch.nn.Module, max_batch: int, max_len: int, block_size: int, num_kv_heads: int,
                 cache_dir: str | None):
        use_cache_dir(cache_dir)
        self.model = model
        self.sizes = sorted({min(b, max_batch) for b in CPU_GRAPH_BATCH_SIZES})
        self.max_len = max_len
        self.block_size = block_size
        self.num_kv_heads = num_kv_heads
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
        plan = DecodeGather.build(meta.decode_seq_lens, meta.decode_block_tables, self.block_size,
                                  self.num_kv_heads)
        buf["input_ids"][:n] = input_ids
        buf["positions"][:n] = positions
        buf["slot_mapping"].fill_(-1)  # rows past n must not write over a slot an earlier step gave them
        buf["slot_mapping"][:n] = meta.slot_mapping
        buf["rows"][:plan.rows.shape[0]] = plan.rows
        buf["padding"][:n, :, :, :plan.length] = plan.padding
        buf["length"].fill_(plan.length)
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
                slot_mapping=b["slot_mapping"], num_decodes=bucket, decode_seq_lens=b["length"],
                decode_block_tables=b["length"], prefill_cu_seqlens_q=b["length"], prefill_seq_lens=b["length"],
                prefill_block_tables=b["length"],
                static_decode=StaticDecodePlan(b["rows"], b["padding"], b["length"]))
            return model(b["input_ids"], b["positions"], meta)

        message = f"compiling the CPU decode step for batch size {bucket} (minutes the first time, then cached)"
        log.info(message)
        if self.progress is not None:
            self.progress(None, message)
        start = time.monotonic()
        try:
            compiled = torch.compile(decode_step, dynamic=False, fullgraph=True)
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
        # Padding rows: token 0 at position 0, not stored (slot -1), attending to row 0 of the cache only, so
        # their softmax has one finite score and never produces NaN.
        padding = torch.ones(bucket, 1, 1, self.max_len, dtype=torch.bool)
        padding[..., 0] = False
        return dict(
            input_ids=torch.zeros(bucket, dtype=torch.long),
            positions=torch.zeros(bucket, dtype=torch.long),
            slot_mapping=torch.full((bucket,), -1, dtype=torch.long),
            rows=torch.zeros(bucket * self.num_kv_heads * self.max_len, dtype=torch.long),
            padding=padding,
            length=torch.ones(1, dtype=torch.long),
        )
