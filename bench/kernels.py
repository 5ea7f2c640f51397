"""Time the paged-attention Triton kernels against torch SDPA on dense K/V, on a GPU.

Decode is bound by reading K/V, so it is reported as effective bandwidth (bytes of K/V read / time) against
the H100's ~2.9 TB/s; prefill is compute-bound and reported in TFLOP/s (causal half counted). The baseline,
`scaled_dot_product_attention` over K/V already gathered into dense tensors, runs in the same process on the
same data and is checked against our output before anything is timed. It pays no paging cost, so a ratio
near 1 means the block-table indirection is free.

Run from the repository root: `python -m bench.kernels [--block-size 16] [--json $OUT/kernels.json]`.
Appends dated rows to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

from engine.infer.kernels import paged_attention_decode, paged_attention_prefill

HEADS, HEAD_DIM = 32, 128  # Llama-2-7B
PEAK_BYTES_PER_S = 2.9e12  # plain read measured on the lent H100 (shared/GPU-NOTES.md)
BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nRows appended by the scripts under `bench/`; each runs its own baseline in the same "
    "process.\n\n| date | script | device | software | result |\n|---|---|---|---|---|\n"
)


def paged_cache(batch: int, context: int, kv_heads: int, block_size: int, dtype, device):
    """Random K/V for `batch` full contexts on shuffled pages, plus the same K/V gathered dense [B, Hkv, L, D]."""
    pages_per_seq = context // block_size
    shape = (batch * pages_per_seq, block_size, kv_heads, HEAD_DIM)
    k_cache = torch.randn(shape, dtype=dtype, device=device)
    v_cache = torch.randn(shape, dtype=dtype, device=device)
    tables = torch.randperm(shape[0], device=device).to(torch.int32).view(batch, pages_per_seq)

    def dense(cache):
        return cache[tables.long()].reshape(batch, context, kv_heads, HEAD_DIM).transpose(1, 2).contiguous()

    return k_cache, v_cache, tables, dense(k_cache), dense(v_cache)


def sdpa(q, k, v, causal: bool):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=q.shape[1] != k.shape[1])


def check(ours: torch.Tensor, baseline: torch.Tensor, what: str) -> None:
    err = (ours.float() - baseline.float()).abs().max().item()
    if not err < 3e-2:
        raise SystemExit(f"{what}: kernel and SDPA differ by {err:.3g}; not timing a wrong kernel")


def bench_decode(batch, context, kv_heads, block_size, dtype, device, timer) -> dict:
    k_cache, v_cache, tables, k, v = paged_cache(batch, context, kv_heads, block_size, dtype, device)
    q = torch.randn(batch, HEADS, HEAD_DIM, dtype=dtype, device=device)
    lens = torch.full((batch,), context, dtype=torch.int32, device=device)
    scale = HEAD_DIM ** -0.5
    ours = lambda: paged_attention_decode(q, k_cache, v_cache, lens, tables, scale)
    base = lambda: sdpa(q[:, :, None], k, v, causal=False)
    check(ours(), base()[:, :, 0], f"decode b{batch} ctx{context} kv{kv_heads}")
    kv_bytes = 2 * k.numel() * k.element_size()
    t_ours, t_base = timer(ours), timer(base)
    return dict(kind="decode", batch=batch, context=context, kv_heads=kv_heads, ms=t_ours * 1e3,
                sdpa_ms=t_base * 1e3, gbps=kv_bytes / t_ours / 1e9, sdpa_gbps=kv_bytes / t_base / 1e9)


def bench_prefill(batch, length, kv_heads, block_size, dtype, device, timer) -> dict:
    k_cache, v_cache, tables, k, v = paged_cache(batch, length, kv_heads, block_size, dtype, device)
    q = torch.randn(batch * length, HEADS, HEAD_DIM, dtype=dtype, device=device)
    cu = torch.arange(0, batch + 1, dtype=torch.int32, device=device) * length
    lens = torch.full((batch,), length, dtype=torch.int32, device=device)
    scale = HEAD_DIM ** -0.5
    ours = lambda: paged_attention_prefill(q, k_cache, v_cache, cu, lens, tables, scale)
    q_dense = q.view(batch, length, HEADS, HEAD_DIM).transpose(1, 2)
    base = lambda: sdpa(q_dense, k, v, causal=True)
    check(ours(), base().transpose(1, 2).reshape(q.shape), f"prefill {batch}x{length} kv{kv_heads}")
    flops = 4 * batch * HEADS * HEAD_DIM * length * (length + 1) / 2  # QK^T and PV over the causal half
    t_ours, t_base = timer(ours), timer(base)
    return dict(kind="prefill", batch=batch, context=length, kv_heads=kv_heads, ms=t_ours * 1e3,
                sdpa_ms=t_base * 1e3, tflops=flops / t_ours / 1e12, sdpa_tflops=flops / t_base / 1e12)


def cuda_timer(fn) -> float:
    """Median seconds per call (triton's do_bench flushes L2 between calls, so decode reads come from HBM)."""
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") / 1e3


def run(block_size: int, dtype, device, timer, decode_shapes, prefill_shape) -> list[dict]:
    results = []
    for kv_heads in (HEADS, 8):
        for batch, context in decode_shapes:
            results.append(bench_decode(batch, context, kv_heads, block_size, dtype, device, timer))
        results.append(bench_prefill(*prefill_shape, kv_heads, block_size, dtype, device, timer))
    return results


def summarize(results: list[dict]) -> list[str]:
    """One line per (kind, kv_heads): `b×ctx ours/SDPA` pairs, the unit in front."""
    lines = []
    for kind, unit, key in (("decode", "GB/s", "gbps"), ("prefill", "TFLOP/s", "tflops")):
        for kv_heads in sorted({r["kv_heads"] for r in results}, reverse=True):
            rows = [r for r in results if r["kind"] == kind and r["kv_heads"] == kv_heads]
            pairs = ", ".join(f"b{r['batch']}×{r['context']} {r[key]:.0f}/{r['sdpa_' + key]:.0f}" for r in rows)
            lines.append(f"{kind} {HEADS}q/{kv_heads}kv heads, {unit} ours/SDPA: {pairs}")
    return lines


def print_table(results: list[dict]) -> None:
    print(f"{'kind':8}{'batch':>6}{'ctx':>6}{'kv':>4}{'ours ms':>10}{'sdpa ms':>10}{'ours':>14}{'sdpa':>14}"
          f"{'of 2.9 TB/s':>13}")
    for r in results:
        key, unit = ("gbps", "GB/s") if r["kind"] == "decode" else ("tflops", "TFLOP/s")
        peak = f"{r['gbps'] * 1e9 / PEAK_BYTES_PER_S:>13.0%}" if key == "gbps" else ""
        print(f"{r['kind']:8}{r['batch']:>6}{r['context']:>6}{r['kv_heads']:>4}{r['ms']:>10.3f}"
              f"{r['sdpa_ms']:>10.3f}{r[key]:>6.0f} {unit:<7}{r['sdpa_' + key]:>6.0f} {unit:<7}{peak}")


def append_rows(lines: list[str], block_size: int, device) -> None:
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
        BENCHMARKS_MD.write_text(HEADER)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    software = f"torch {torch.__version__}, triton {triton.__version__}"
    today = datetime.date.today().isoformat()
    with BENCHMARKS_MD.open("a") as f:
        for line in lines:
            f.write(f"| {today} | bench/kernels.py (bf16, block {block_size}) | {name} | {software} | {line} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-size", type=int, default=16, help="tokens per KV page")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/kernels.py needs a CUDA GPU")
    device = torch.device("cuda")
    decode_shapes = [(b, c) for b in (1, 64, 256) for c in (1024, 4096)]
    results = run(args.block_size, torch.bfloat16, device, cuda_timer, decode_shapes, (8, 1024))
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    append_rows(summarize(results), args.block_size, device)


if __name__ == "__main__":
    main()
