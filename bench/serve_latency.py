"""Serving over HTTP: our server (what `inkstone serve` runs) against HF's own OpenAI-compatible server
(`transformers serve --continuous-batching`), same model, dtype, prompts and client, in one run.

Each server runs in its own process on loopback. The client is the official `openai` package (AsyncOpenAI):
--concurrency workers stream chat completions until --requests are done. Prompts have mixed lengths; every
answer is exactly --output-tokens long (ours: ignore_eos; HF: min_new_tokens), so both sides produce the same
tokens. Metrics as vLLM's benchmark_serving defines them: request/s and output tok/s over the wall time;
TTFT (request sent -> first token), TPOT ((last token - first token) / (tokens - 1), per request) and ITL
(gaps between stream chunks, all requests pooled), each as mean, median and P99. Appends a row per server to
docs/benchmarks.md.

    python -m bench.serve_latency [--requests 32 --concurrency 8 --output-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import transformers
from openai import AsyncOpenAI

from bench.infer_throughput import BENCHMARKS_MD, HEADER, machine
from engine.ports import free_port

REPO = Path(__file__).resolve().parents[1]
WORDS = ["the", "ink", "stone", "holds", "water", "and", "brush", "takes", "it", "up", "slowly", "while", "scholar",
         "reads", "old", "poems", "about", "rivers", "mountains", "autumn", "wind", "bamboo", "a", "small", "boat",
         "far", "from", "home", "under", "quiet", "moon"]


@dataclass
class Timing:
    sent: float
    chunks: list[float] = field(default_factory=list)
    """Arrival time of every stream chunk that carried text."""
    tokens: int = 0


@dataclass
class Server:
    name: str
    command: list[str]
    model: str
    """The model name requests carry."""
    extra_body: dict
    proc: subprocess.Popen | None = None


def prompts(n: int, low: int, high: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) + "\nGo on with this story."
            for _ in range(n)]


def start(server: Server, port: int, log: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    server.proc = subprocess.Popen(server.command, cwd=REPO, env=env, stdout=log.open("wb"),
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode}; its log: {log}")
        try:
            # Both answer a one-token request once the model is loaded.
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30, json={
                "model": server.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
            return
        except httpx.TransportError:
            time.sleep(1)
    raise SystemExit(f"{server.name} did not answer within 300 s; its log: {log}")


def stop(server: Server) -> None:
    if server.proc and server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()


async def one_request(client: AsyncOpenAI, server: Server, prompt: str, output_tokens: int) -> Timing:
    timing = Timing(sent=time.perf_counter())
    stream = await client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": prompt}], max_tokens=output_tokens,
        temperature=0, stream=True, stream_options={"include_usage": True}, extra_body=server.extra_body)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            timing.chunks.append(time.perf_counter())
        if chunk.usage:
            timing.tokens = chunk.usage.completion_tokens
    return timing


async def run_load(port: int, server: Server, texts: list[str], concurrency: int, output_tokens: int):
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
    queue = list(texts)
    timings: list[Timing] = []

    async def worker():
        while queue:
            timings.append(await one_request(client, server, queue.pop(0), output_tokens))

    start_at = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start_at
    await client.close()
    return timings, wall


def summarize(timings: list[Timing], wall: float) -> dict:
    bad = [t for t in timings if not t.chunks]
    if bad:
        raise SystemExit(f"{len(bad)} of {len(timings)} requests streamed no text")
    ttft = [(t.chunks[0] - t.sent) * 1e3 for t in timings]
    tpot = [(t.chunks[-1] - t.chunks[0]) * 1e3 / (t.tokens - 1) for t in timings if t.tokens > 1]
    itl = [(b - a) * 1e3 for t in timings for a, b in zip(t.chunks, t.chunks[1:], strict=False)]
    tokens = sum(t.tokens for t in timings)
    return dict(req_s=len(timings) / wall, tok_s=tokens / wall, tokens=tokens, wall=wall,
                ttft=_stats(ttft), tpot=_stats(tpot), itl=_stats(itl))


def _stats(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.mean(values), statistics.median(values), p99


def line(name: str, s: dict) -> str:
    parts = [f"{name}: {s['req_s']:.2f} req/s, {s['tok_s']:.1f} output tok/s ({s['tokens']} tokens in "
             f"{s['wall']:.1f} s)"]
    for key in ("ttft", "tpot", "itl"):
        mean, median, p99 = s[key]
        parts.append(f"{key.upper()} mean/median/P99 {mean:.0f}/{median:.0f}/{p99:.0f} ms")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="HF folder (default: the bundled SmolLM2-135M)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", help="both servers")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--prompt-words", type=int, nargs=2, default=(20, 400), metavar=("LOW", "HIGH"))
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.output_tokens < 2:
        parser.error("--requests and --concurrency must be >= 1, --output-tokens >= 2")
    hf_cli = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    if not Path(hf_cli).exists():
        parser.error("the `transformers` command (HF's server, the baseline) is not installed")
    from engine.models.bundled import ensure_bundled_hf
    model = str((args.model or ensure_bundled_hf(REPO / ".data" / "test-models")).resolve())

    ours_port, hf_port = free_port(), free_port()
    serve_ours = ("import sys; from engine.serve.server import ServeArgs, run_server; "
                  "run_server(ServeArgs(model_path=sys.argv[1], served_model_name='m', port=int(sys.argv[2]), "
                  "device=sys.argv[3], dtype=sys.argv[4]))")
    n = args.output_tokens
    servers = [
        (ours_port, Server("ours", [sys.executable, "-c", serve_ours, model, str(ours_port), args.device,
                                    args.dtype], "m", {"ignore_eos": True})),
        (hf_port, Server("HF transformers serve --continuous-batching",
                         [hf_cli, "serve", model, "--port", str(hf_port), "--device", args.device, "--dtype",
                          args.dtype, "--continuous-batching", "--log-level", "error"], model,
                         {"generation_config": json.dumps({"max_new_tokens": n, "min_new_tokens": n,
                                                           "do_sample": False})})),
    ]
    texts = prompts(args.requests, *args.prompt_words)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for port, server in servers:
            try:
                start(server, port, Path(tmp) / f"{port}.log")
                # One short warm-up round (allocator, lazy init), then the measured one on fresh prompts.
                asyncio.run(run_load(port, server, prompts(args.concurrency, 10, 20, seed=99), args.concurrency, 4))
                timings, wall = asyncio.run(run_load(port, server, texts, args.concurrency, n))
            finally:
                stop(server)
            results[server.name] = summarize(timings, wall)
            print(line(server.name, results[server.name]), flush=True)
    ours, hf = results["ours"], results[servers[1][1].name]
    ratio = ours["tok_s"] / hf["tok_s"]
    print(f"output tok/s ours/HF = {ratio:.2f}x")
    if not args.no_record:
        record(args, Path(model).name, results, ratio)


def record(args, model: str, results: dict, ratio: float) -> None:
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(HEADER)
    software = f"transformers {transformers.__version__}, openai {openai.__version__}"
    workload = (f"{args.requests} requests, {args.concurrency} concurrent, prompts {args.prompt_words[0]}.."
                f"{args.prompt_words[1]} words, {args.output_tokens} output tokens, {args.dtype}")
    body = " vs ".join(line(name, s) for name, s in results.items())
    with BENCHMARKS_MD.open("a") as f:
        f.write(f"| {datetime.date.today().isoformat()} | bench/serve_latency.py ({model}; {workload}) | "
                f"{machine(args.device)} | {software} | {body}; output tok/s ours/HF = {ratio:.2f}x |\n")


if __name__ == "__main__":
    main()
