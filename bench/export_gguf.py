"""GGUF export: time and peak memory on a Llama-2-7B-shaped random model, and fidelity on the bundled model.

(1) A random-init model with the Llama-2-7B layer shape (hidden 4096, ffn 11008, 32 heads) is written to disk
    shard by shard in bf16, never whole in RAM. Its vocab is 49152 (the bundled SmolLM2 tokenizer's) instead of
    32000, because export needs a real tokenizer. `--layers N` shrinks it (default 4 layers, 2.4 GB; 32 is the
    full 13.5 GB). Each export runs in its own process so peak RSS is its own: ours (streaming) for F16, Q8_0
    and Q4_K_M (llama.cpp, from an F16 written first), and the baseline, convert_hf_to_gguf's eager mode: read
    every tensor, hand all of them to gguf's GGUFWriter.add_tensor, write at the end.
(2) Fidelity: the bundled SmolLM2-135M exported to several types and verified by llama.cpp against HF.

Prints the tables and appends dated rows to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
LLAMA2_7B_LAYER = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32)
VOCAB = 49152
FIDELITY_QUANTS = "f16,q8_0,q6_k,q5_k_m,q4_k_m"


def build_random_model(out: Path, layers: int, tokenizer_dir: Path) -> int:
    """Write a bf16 random model one shard per layer; returns its size in bytes."""
    import torch
    from safetensors.torch import save_file

    h, f = LLAMA2_7B_LAYER["hidden_size"], LLAMA2_7B_LAYER["intermediate_size"]
    out.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(torch.bfloat16)

    weight_map = {}
    shards = [("embed", {"model.embed_tokens.weight": rand(VOCAB, h)}),
              ("head", {"lm_head.weight": rand(VOCAB, h), "model.norm.weight": torch.ones(h, dtype=torch.bfloat16)})]
    for name, tensors in shards:
        save_file(tensors, out / f"{name}.safetensors", metadata={"format": "pt"})
        weight_map.update({k: f"{name}.safetensors" for k in tensors})
    for i in range(layers):  # one layer in RAM at a time
        p = f"model.layers.{i}."
        tensors = {p + "self_attn.q_proj.weight": rand(h, h), p + "self_attn.k_proj.weight": rand(h, h),
                   p + "self_attn.v_proj.weight": rand(h, h), p + "self_attn.o_proj.weight": rand(h, h),
                   p + "mlp.gate_proj.weight": rand(f, h), p + "mlp.up_proj.weight": rand(f, h),
                   p + "mlp.down_proj.weight": rand(h, f), p + "input_layernorm.weight": torch.ones(h).bfloat16(),
                   p + "post_attention_layernorm.weight": torch.ones(h).bfloat16()}
        save_file(tensors, out / f"layer-{i:02d}.safetensors", metadata={"format": "pt"})
        weight_map.update({k: f"layer-{i:02d}.safetensors" for k in tensors})
    config = dict(model_type="llama", architectures=["LlamaForCausalLM"], num_hidden_layers=layers,
                  vocab_size=VOCAB, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                  tie_word_embeddings=False, torch_dtype="bfloat16", bos_token_id=1, eos_token_id=2,
                  **LLAMA2_7B_LAYER)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).exists():
            shutil.copy2(tokenizer_dir / name, out / name)
    return sum(p.stat().st_size for p in out.glob("*.safetensors"))


def baseline_export(src: Path, out: Path) -> None:
    """convert_hf_to_gguf's eager mode: every tensor read and converted, all held until the file is written."""
    import gguf

    from engine.export import writer as w
    from engine.export.quant_types import QUANT_TYPES

    config = w.read_config(src)
    writer = gguf.GGUFWriter(str(out), arch="llama")
    w._add_metadata(writer, src, config, QUANT_TYPES["f16"], src.name)
    for p in w._plan(src, config, QUANT_TYPES["f16"]):
        writer.add_tensor(p.name, w._convert(w._read(p, config), p.qtype), raw_dtype=p.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def child(mode: str, src: Path, out_dir: Path, quant: str) -> None:
    """One export in this process; prints seconds and peak RSS as JSON."""
    start = time.perf_counter()
    if mode == "baseline":
        baseline_export(src, out_dir / "baseline.F16.gguf")
    else:
        from engine.export.exporter import ExportRequest, export_gguf

        export_gguf(ExportRequest(str(src), quant, str(out_dir), name=f"ours-{quant}", verify=False, threads=2))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_child(mode: str, src: Path, out_dir: Path, quant: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", mode, "--src", str(src), "--out", str(out_dir),
                        "--quants", quant], capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        raise SystemExit(f"{mode} {quant} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def fidelity(bundled: Path, work: Path) -> list:
    from engine.export.exporter import ExportRequest, export_gguf

    return export_gguf(ExportRequest(str(bundled), FIDELITY_QUANTS, str(work / "fidelity"), name="smol", threads=2))


def software() -> str:
    from importlib.metadata import version

    import llama_cpp
    import torch

    return (f"gguf {version('gguf')}, llama-cpp-python {llama_cpp.__version__}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4, help="decoder layers of the 7B shape (32 = full 7B)")
    ap.add_argument("--quants", default="f16,q8_0,q4_k_m", help="types timed on the 7B-shaped model")
    ap.add_argument("--workdir", default=str(REPO / ".data" / "bench-export"), help="scratch folder (deleted)")
    ap.add_argument("--skip-fidelity", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.src), Path(args.out), args.quants)
        return 0

    from engine.export.quant_types import estimate_bytes, parse_quants
    from engine.models.bundled import ensure_bundled_hf

    h, f = LLAMA2_7B_LAYER["hidden_size"], LLAMA2_7B_LAYER["intermediate_size"]
    n_params = 2 * VOCAB * h + args.layers * (4 * h * h + 3 * h * f)
    quants = parse_quants(args.quants)
    # Each export is deleted after it is timed: the peak is the source plus the largest one (a K-quant also
    # writes an F16 first, for llama.cpp's quantizer to read).
    f16 = estimate_bytes(n_params, parse_quants("f16")[0])
    need = n_params * 2 + max(estimate_bytes(n_params, q) + (f16 if q.maker == "llama.cpp" else 0) for q in quants)
    # The baseline holds every converted tensor until it writes: it needs the whole F16 model in RAM.
    baseline_fits = f16 * 1.2 < psutil.virtual_memory().available
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(f"{work}: needs about {need / 2**30:.1f} GiB free, {free / 2**30:.1f} GiB are; "
                         "use --layers to shrink the model")
    bundled = ensure_bundled_hf(REPO / ".data" / "test-models")
    rows = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        size = build_random_model(tmp / "src", args.layers, bundled)
        print(f"built a {args.layers}-layer Llama-2-7B-shaped model: {n_params / 1e9:.2f}B params, "
              f"{size / 2**30:.2f} GiB bf16 in {time.perf_counter() - t0:.0f}s; largest tensor "
              f"{VOCAB * h * 4 / 2**30:.2f} GiB as fp32")
        results = {}
        for q in quants:
            (tmp / q.name).mkdir()
            results[f"ours {q.name}"] = run_child("ours", tmp / "src", tmp / q.name, q.name)
            shutil.rmtree(tmp / q.name)
        if baseline_fits:
            (tmp / "base").mkdir()
            results["baseline f16 (eager)"] = run_child("baseline", tmp / "src", tmp / "base", "f16")
            shutil.rmtree(tmp / "base")
        else:
            print(f"baseline skipped: eager mode would hold {f16 / 2**30:.1f} GiB of F16 tensors in RAM, "
                  f"{psutil.virtual_memory().available / 2**30:.1f} GiB are available")
        print(f"{'export':<22}{'seconds':>9}{'peak RSS GiB':>14}")
        for name, r in results.items():
            print(f"{name:<22}{r['seconds']:>9.1f}{r['peak_rss'] / 2**30:>14.2f}")
        ours, base = results.get("ours f16"), results.get("baseline f16 (eager)")
        summary = "; ".join(f"{n} {r['seconds']:.0f}s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB"
                            for n, r in results.items())
        if ours and base:
            summary += f" (F16 peak RSS ours/baseline = {ours['peak_rss'] / base['peak_rss']:.2f}x)"
        elif not base:
            summary += f"; baseline not run (needs {f16 / 2**30:.1f} GiB of RAM)"
        rows.append((f"7B shape, {args.layers} layers, {n_params / 1e9:.2f}B params, {size / 2**30:.2f} GiB bf16",
                     summary))
        if not args.skip_fidelity:
            files = fidelity(bundled, tmp)
            print(f"\n{'type':<8}{'size MiB':>10}{'ppl delta %':>13}{'top-1':>8}{'llama.cpp tok/s':>17}")
            for fl in files:
                m = fl.metrics
                print(f"{fl.quant:<8}{fl.size_bytes / 2**20:>10.1f}{m['ppl_delta_pct']:>+13.3f}"
                      f"{m['top1_agreement']:>8.3f}{m['tokens_per_s']:>17.1f}")
            tokens = files[0].metrics["eval_tokens"]
            rows.append((f"fidelity, smollm2-135m-instruct vs HF fp32 ({tokens} tokens)", "; ".join(
                f"{fl.quant} {fl.size_bytes / 2**20:.0f} MiB ppl {fl.metrics['ppl_delta_pct']:+.2f}% "
                f"top-1 {fl.metrics['top1_agreement']:.3f} {fl.metrics['tokens_per_s']:.0f} tok/s" for fl in files)))
    machine = f"{platform.system()} {platform.machine()}, 2 threads for llama.cpp"
    today = datetime.date.today().isoformat()
    with BENCHMARKS_MD.open("a") as fh:
        for what, result in rows:
            fh.write(f"| {today} | bench/export_gguf.py ({what}) | {machine} | {software()} | {result} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
