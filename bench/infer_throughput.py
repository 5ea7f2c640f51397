"""Inference throughput: our engine against HF `generate` on the same model and prompts, in one run.

CPU (default): the bundled SmolLM2-135M in the engine's default dtype (bf16 on CPUs with native bf16, else
fp32), against HF in from_pretrained's default dtype and, where that differs, in ours; (a) an offline batch of
16 concurrent requests with mixed prompt and output lengths, and the same at batch 1; (b) batch-1 decode
tokens/s. Batch-1 rows also give the effective GB/s of weights read against a streaming read measured in the
same run (what bounds batch-1 decode). HF serves a batch the only way it can: one left-padded batch run until
its longest request is done, so only each request's own tokens count.
GPU (`--device cuda --random-7b`): a random-init Llama-2-7B shape in bf16, the grid bs 1/16/64/128/256 at
in 128 / out 128, and the nano-vllm shape (256 requests, in/out lengths uniform in 100..1024, ignore_eos; ours
only, HF would need a padded 256 x 2048 batch).

CPU, llama.cpp in the same run (bench/llama_cpp_side.py; --no-llama-cpp skips it), same threads: batch-1
decode of our model streamed through `inkstone serve`, and in the engine alone (what serving costs; and after a
1024-token prompt, where attention weighs), against llama.cpp on the F16 GGUF of the same model (our
exporter's) and on the bundled Q4_1 file; the mixed workload against llama.cpp serving the requests one at a
time, with the compute floor of that workload (its matmul flops at a GEMM rate measured in the same run: what
no scheduling can beat); prefill tok/s of a long prompt on both (ours alone, and streamed through the server:
its time to first token).

Ours runs with compiled CPU decode graphs (EngineConfig.compile_cpu; --eager for the eager engine), compiled
before timing from inductor's cache under .data/inductor-cache (the first run compiles: minutes).
Each case runs --repeat turns, alternating the sides, and reports medians. Prints the ratios and appends
a dated row per case to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from engine.infer import EngineConfig, LLMEngine, SamplingParams

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nRows appended by the scripts under `bench/`; each runs its own baseline in the same "
    "process.\n\n| date | script | device | software | result |\n|---|---|---|---|---|\n"
)
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)


@dataclass
class Workload:
    name: str
    """Row label."""
    prompt_lens: list[int]
    """Prompt length of each request."""
    output_lens: list[int]
    """Tokens each request generates (EOS ignored)."""
    run_hf: bool = True
    """Whether the HF baseline runs too."""


def mixed(name: str, n: int, prompt_range: tuple[int, int], output_range: tuple[int, int], seed: int = 0,
          run_hf: bool = True) -> Workload:
    rng = random.Random(seed)
    return Workload(name, [rng.randint(*prompt_range) for _ in range(n)],
                    [rng.randint(*output_range) for _ in range(n)], run_hf)


def random_prompts(w: Workload, vocab: int, seed: int = 1) -> list[list[int]]:
    rng = random.Random(seed)
    # Skip the low ids, where tokenizers keep their special tokens.
    return [[rng.randint(1000, vocab - 1) for _ in range(n)] for n in w.prompt_lens]


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def hf_throughput(model, prompts: list[list[int]], w: Workload, device: str, pad_id: int) -> float:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    longest = max(w.output_lens)
    with torch.inference_mode():
        seconds = timed(lambda: model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                               max_new_tokens=longest, min_new_tokens=longest, pad_token_id=pad_id))
    return sum(w.output_lens) / seconds


def engine_throughput(engine: LLMEngine, prompts: list[list[int]], w: Workload) -> float:
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in w.output_lens]
    seconds = timed(lambda: engine.generate(prompts, params))
    return sum(w.output_lens) / seconds


def engine_decode_rate(engine: LLMEngine, prompt: list[int], tokens: int) -> float:
    """Decode tok/s of one request in the engine alone: tokens after the first over the time between them (the
    same measure as the streamed and llama.cpp rates, without the server)."""
    engine.add_request(prompt, SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True))
    stamps = []
    while engine.has_unfinished_requests():
        stamps += [time.perf_counter() for out in engine.step() if out.new_token_ids]
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes a decode step reads from weights: every matrix once (a tied embedding once, as the LM head); layers
    kept as fp16 (layers/fp16_weights.py) at two bytes a value, and then the embedding is not the head's."""
    total = sum(m.weight_bytes for m in model.modules() if hasattr(m, "weight_bytes"))
    head = getattr(model, "lm_head", None)
    seen: set[int] = {head.weight.data_ptr()} if hasattr(getattr(head, "kernel", None), "weight_bytes") else set()
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def read_bandwidth(device: torch.device) -> float:
    """GB/s of a large streaming read (a sum over 1 GiB on a GPU, 512 MiB on a CPU), best of 5."""
    x = torch.ones((1 << 30 if device.type == "cuda" else 1 << 29) // 4, device=device)
    best = float("inf")
    for _ in range(5):
        best = min(best, timed(x.sum))
    return x.numel() * 4 / best / 1e9


def gemm_rate(device: torch.device, dtype: torch.dtype) -> float:
    """GFLOP/s of a large matmul (2048^3) in dtype, best of 5: the most the arithmetic of prefill can run at."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    best = min(timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048 ** 3 / best / 1e9


def compute_floor(model: torch.nn.Module, w: Workload, gflops: float) -> float:
    """Output tok/s that w could reach at most at gflops: every prompt token and every generated token but the
    first of each request through the layers' matrices, every generated token through the LM head (two flops a
    value; attention left out, so the floor is generous)."""
    layer_values = sum(m.in_features * m.out_features for m in model.layers.modules() if hasattr(m, "in_features"))
    head_values = model.lm_head.in_features * model.lm_head.out_features
    outputs = sum(w.output_lens)
    flops = 2 * (layer_values * (sum(w.prompt_lens) + outputs - len(w.output_lens)) + head_values * outputs)
    return outputs / (flops / (gflops * 1e9))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads ({platform.system()} {platform.machine()})"


def random_7b_folder(tokenizer_dir: Path, out: Path) -> Path:
    config = AutoConfig.for_model("llama", **LLAMA2_7B, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    from engine.models.loader import load_tokenizer

    load_tokenizer(tokenizer_dir).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="HF folder (default: the bundled SmolLM2-135M)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--random-7b", action="store_true", help="random-init Llama-2-7B shape in bf16 (GPU)")
    parser.add_argument("--requests", type=int, default=16, help="concurrent requests of the mixed workload")
    parser.add_argument("--prompt-range", type=int, nargs=2, default=[16, 512], help="prompt length range")
    parser.add_argument("--output-range", type=int, nargs=2, default=[16, 128], help="output length range")
    parser.add_argument("--decode-tokens", type=int, default=64, help="tokens of the batch-1 decode case")
    parser.add_argument("--threads", type=int, help="torch CPU threads (both sides)")
    parser.add_argument("--repeat", type=int, default=3, help="turns per case, each side's median reported")
    parser.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16: ours, and HF's second run "
                        "(a CPU with AVX512-BF16 or AMX runs bf16 matmuls several times faster than fp32)")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    parser.add_argument("--eager", action="store_true", help="ours without compiled CPU decode graphs")
    parser.add_argument("--no-llama-cpp", action="store_true", help="CPU: skip the llama.cpp and served rows")
    parser.add_argument("--served-tokens", type=int, default=128, help="tokens of the streamed batch-1 case")
    parser.add_argument("--load", default="", help="what else ran on the machine, for the recorded rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    from engine.models.bundled import ensure_bundled_hf

    bundled = ensure_bundled_hf(REPO / ".data" / "test-models")
    tmp = None
    if args.random_7b:
        tmp = tempfile.TemporaryDirectory(dir=REPO / ".data")
        model_dir = random_7b_folder(bundled, Path(tmp.name))
        workloads = [mixed(f"bs{bs} in128/out128", bs, (128, 128), (128, 128)) for bs in (1, 16, 64, 128, 256)]
        workloads.append(mixed("nano-vllm 256 x in/out 100..1024", 256, (100, 1024), (100, 1024), run_hf=False))
        dtype = "bfloat16"
    else:
        model_dir = args.model or bundled
        lo, hi = args.output_range
        workloads = [
            mixed(f"{args.requests} mixed (in {args.prompt_range[0]}..{args.prompt_range[1]}, out {lo}..{hi})",
                  args.requests, tuple(args.prompt_range), (lo, hi)),
            mixed(f"bs1 (in {args.prompt_range[1] // 2}, out {hi})", 1, (args.prompt_range[1] // 2,) * 2, (hi, hi)),
            mixed(f"bs1 decode (in 16, out {args.decode_tokens})", 1, (16, 16), (args.decode_tokens,) * 2),
        ]
        dtype = args.dtype

    cpu = args.device == "cpu"
    compiled = cpu and not args.eager
    engine = LLMEngine(str(model_dir), EngineConfig(device=args.device, dtype=dtype, compile_cpu=compiled,
                                                    compile_cache_dir=str(REPO / ".data" / "inductor-cache")))
    if compiled:
        start = time.perf_counter()
        engine.runner.cpu_graphs.warm_up([b for b in engine.runner.cpu_graphs.sizes if b <= args.requests])
        print(f"compiled CPU decode graphs {sorted(engine.runner.cpu_graphs.compiled)} in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    ours_dtype = engine.runner.dtype
    vocab = engine.runner.model.config.vocab_size
    pad_id = engine.tokenizer.pad_token_id or 0
    warm = [[1000 + i for i in range(32)]]
    engine.generate(warm, SamplingParams(temperature=0, max_tokens=4))

    # HF runs as a user gets it (from_pretrained's default dtype) and, where that differs, in ours' dtype.
    hf_models: dict[torch.dtype, torch.nn.Module] = {}

    def hf_model(dtype: torch.dtype | None):
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **({"dtype": dtype} if dtype else {}))
        model = model.to(engine.runner.device).eval()
        hf_throughput(model, warm, mixed("warm", 1, (32, 32), (4, 4)), engine.runner.device.type, pad_id)
        hf_models[model.dtype] = model

    # Batch-1 decode is bound by reading the weights once per token: how close it gets to the memory's rate.
    step_bytes = weight_bytes(engine.runner.model)
    bandwidth = read_bandwidth(engine.runner.device)
    rows = []
    for w in workloads:
        if w.run_hf and not hf_models:
            hf_model(None)
            if ours_dtype not in hf_models:
                hf_model(ours_dtype)
        ours_runs: list[float] = []
        hf_runs: dict[torch.dtype, list[float]] = {dt: [] for dt in hf_models} if w.run_hf else {}
        # Turns alternate, so a shift in the machine's load hits both sides; new prompts each turn, so the
        # prefix cache has nothing to reuse from the last.
        for turn in range(args.repeat):
            prompts = random_prompts(w, vocab, seed=1 + turn)
            ours_runs.append(engine_throughput(engine, prompts, w))
            for dt in hf_runs:
                hf_runs[dt].append(hf_throughput(hf_models[dt], prompts, w, engine.runner.device.type, pad_id))
        ours = statistics.median(ours_runs)
        hf = {dt: statistics.median(runs) for dt, runs in hf_runs.items()}
        note = ""
        if len(w.prompt_lens) == 1:
            gbs = ours * step_bytes / 1e9
            note = (f"effective {gbs:.1f} GB/s of weights = {gbs / bandwidth:.0%} of the measured read bandwidth "
                    f"({bandwidth:.1f} GB/s)")
        rows.append((w.name, hf, ours, note))
        print(f"{w.name:<48} ours {ours:>9.1f} tok/s ({_short(ours_dtype)})   "
              + "   ".join(f"HF {_short(dt)} {t:>9.1f} tok/s = {ours / t:.2f}x" for dt, t in hf.items())
              + (f"   {note}" if note else ""), flush=True)

    mode = (", fp16 weights" if getattr(engine.runner, "fp16_weights", False) else "") + (
        ", bf16 streaming kernel" if getattr(engine.runner, "bf16_kernel", False) else "") + (
        ", compiled decode" if compiled else "")
    if cpu and not args.random_7b and not args.no_llama_cpp:
        rows += llama_cpp_rows(engine, Path(model_dir), workloads[0], args, threads, step_bytes, bandwidth)
    if not args.no_record:
        default = next(iter(hf_models), None)
        record(rows, args.device, Path(model_dir).name if not args.random_7b else "random Llama-2-7B",
               ours_dtype, default, args.repeat, mode, args.load)
    if tmp is not None:
        tmp.cleanup()


LONG_CONTEXT = 1024
"""Prompt tokens of the long-context batch-1 decode row."""


def llama_cpp_rows(engine: LLMEngine, model_dir: Path, mixed_w: Workload, args, threads: int, step_bytes: int,
                   bandwidth: float) -> list[tuple]:
    """Rows of (name, {baseline: tok/s}, ours tok/s, note) against llama.cpp, each side alternating per turn."""
    from bench.llama_cpp_side import LlamaCpp, ServedModel, f16_gguf
    from engine.models.bundled import bundled_gguf_path
    from engine.ports import free_port

    vocab = engine.runner.model.config.vocab_size
    ggufs = {"llama.cpp F16": f16_gguf(model_dir, threads)}
    if model_dir.name == "smollm2-135m-instruct":
        ggufs["llama.cpp Q4_1 (bundled)"] = bundled_gguf_path()
    llamas = {name: LlamaCpp(path, threads) for name, path in ggufs.items()}
    log = REPO / ".data" / "bench-serve.log"
    served = ServedModel(model_dir, free_port(), threads, args.dtype, args.eager, log)
    rows = []
    try:
        decode_w = mixed("stream", 1, (16, 16), (args.served_tokens,) * 2)
        if not args.eager:
            served.wait_compiled(random_prompts(decode_w, vocab, seed=99)[0])
        runs: dict[str, list[float]] = {"ours": [], "engine": [], **{name: [] for name in llamas}}
        for turn in range(args.repeat):
            [prompt] = random_prompts(decode_w, vocab, seed=1 + turn)
            runs["ours"].append(served.decode_rate(prompt, args.served_tokens))
            runs["engine"].append(engine_decode_rate(engine, prompt, args.served_tokens))
            for name, llm in llamas.items():
                runs[name].append(llm.decode_rate(prompt, args.served_tokens))
        # Decode deep into a conversation: with 1024 tokens of context, attention reads a sixth as many bytes a step
        # as the weights (the bundled model in fp32).
        long_w = mixed("long", 1, (LONG_CONTEXT, LONG_CONTEXT), (args.served_tokens,) * 2)
        long_runs: dict[str, list[float]] = {"ours": [], "llama.cpp F16": []}
        for turn in range(args.repeat):
            [prompt] = random_prompts(long_w, vocab, seed=401 + turn)
            long_runs["ours"].append(engine_decode_rate(engine, prompt, args.served_tokens))
            long_runs["llama.cpp F16"].append(llamas["llama.cpp F16"].decode_rate(prompt, args.served_tokens))
        # Prefill as the Chat page meets it: a 512-token prompt's time to its first streamed token.
        served_prefill, cpp_prefill = [], []
        for turn in range(args.repeat):
            [prompt] = random_prompts(mixed("prefill", 1, (512, 512), (1, 1)), vocab, seed=301 + turn)
            served_prefill.append(served.prefill_rate(prompt))
            cpp_prefill.append(llamas["llama.cpp F16"].prefill_rate(prompt))
    finally:
        served.close()
    med = {name: statistics.median(r) for name, r in runs.items()}
    ours, alone = med.pop("ours"), med.pop("engine")
    for name, rate in ((f"bs1 decode streamed through inkstone serve (in 16, out {args.served_tokens})", ours),
                       (f"bs1 decode, the engine alone (in 16, out {args.served_tokens})", alone)):
        gbs = rate * step_bytes / 1e9
        rows.append((name, med, rate, f"effective {gbs:.1f} GB/s of weights = {gbs / bandwidth:.0%} of the measured "
                                      f"read bandwidth ({bandwidth:.1f} GB/s)"))

    rows.append((f"bs1 decode, the engine alone (in {LONG_CONTEXT}, out {args.served_tokens})",
                 {"llama.cpp F16": statistics.median(long_runs["llama.cpp F16"])},
                 statistics.median(long_runs["ours"]), ""))
    rows.append(("prefill tok/s streamed through inkstone serve (512-token prompt, time to first token)",
                 {"llama.cpp F16": statistics.median(cpp_prefill)}, statistics.median(served_prefill), ""))

    f16 = llamas["llama.cpp F16"]
    ours_runs, cpp_runs = [], []
    for turn in range(args.repeat):
        # Seeds of their own: the rows above left their prompts in our prefix cache (llama.cpp resets per request).
        prompts = random_prompts(mixed_w, vocab, seed=101 + turn)
        ours_runs.append(engine_throughput(engine, prompts, mixed_w))
        cpp_runs.append(f16.serial_throughput(prompts, mixed_w.output_lens))
    # What batching can win here is bounded by arithmetic: llama.cpp's serial time is mostly batch-1 decode (bound
    # by reading weights), ours mostly prefill and batched decode (bound by the GEMM rate).
    dtype = engine.runner.dtype
    gflops = gemm_rate(engine.runner.device, dtype)
    floor = compute_floor(engine.runner.model, mixed_w, gflops)
    cpp = statistics.median(cpp_runs)
    rows.append((f"{mixed_w.name}, llama.cpp one request at a time", {"llama.cpp F16": cpp},
                 statistics.median(ours_runs),
                 f"compute floor at the measured {_short(dtype)} GEMM rate ({gflops:.0f} GFLOP/s): at most "
                 f"{floor:.1f} tok/s = {floor / cpp:.2f}x llama.cpp; ours at {statistics.median(ours_runs) / floor:.0%}"
                 " of it"))

    prefill_w = mixed("prefill", 1, (512, 512), (1, 1))
    one_token = SamplingParams(temperature=0, max_tokens=1, ignore_eos=True)
    ours_runs, cpp_runs = [], []
    for turn in range(args.repeat):
        [prompt] = random_prompts(prefill_w, vocab, seed=201 + turn)
        ours_runs.append(len(prompt) / timed(lambda p=prompt: engine.generate([p], one_token)))
        cpp_runs.append(f16.prefill_rate(prompt))
    rows.append(("prefill tok/s (one 512-token prompt)", {"llama.cpp F16": statistics.median(cpp_runs)},
                 statistics.median(ours_runs), ""))
    for name, baselines, value, note in rows:
        print(f"{name:<60} ours {value:>8.1f}   " + "   ".join(f"{b} {t:.1f} = {value / t:.2f}x"
                                                             for b, t in baselines.items()) + f"   {note}", flush=True)
    return rows


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def record(rows, device: str, model: str, ours_dtype: torch.dtype, hf_default: torch.dtype | None,
           repeat: int, mode: str, load: str) -> None:
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
        BENCHMARKS_MD.write_text(HEADER)
    software = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if device == "cpu":
        import llama_cpp

        software += f", llama-cpp-python {llama_cpp.__version__}"
    where = machine(device) + (f"; {load}" if load else "")
    today = datetime.date.today().isoformat()
    with BENCHMARKS_MD.open("a") as f:
        for name, hf, ours, note in rows:
            versus = "; ".join(
                f"{dt} {t:.1f} = {ours / t:.2f}x" if isinstance(dt, str) else
                f"HF generate {t:.1f} ({_short(dt)}{', its default' if dt == hf_default else ''}) = {ours / t:.2f}x"
                for dt, t in hf.items()) or "no HF baseline"
            f.write(f"| {today} | bench/infer_throughput.py ({model}) | {where} | {software} | "
                    f"{name} (median of {repeat}): ours {ours:.1f} tok/s ({_short(ours_dtype)}{mode}) vs {versus}"
                    f"{'; ' + note if note else ''} |\n")


if __name__ == "__main__":
    main()
