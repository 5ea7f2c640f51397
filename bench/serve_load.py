"""Load and abuse of the model server: many concurrent streaming clients, then a storm of clients that hang up
mid-stream, and whether the engine comes back to empty (no running or waiting request, no KV block held).

The server is what `inkstone serve` runs (`run_server(ServeArgs(...))`) in its own process on 127.0.0.1, with the
bundled model unless --model says otherwise. The baseline, in the same run, is the same request with no other
client: the load phase reports its TTFT and total latency as a ratio of that. Clients are plain httpx streams
(the `openai` client's per-chunk pydantic parsing would make a 2-core client the bottleneck at 500 streams); a
request counts as an error unless it answers 200, streams at least one token and ends with `[DONE]`. Engine
state comes from the server's own /metrics. Everything is bounded: --time-limit for the whole run, a timeout on
every request, and the counts given on the command line. Appends a row to docs/benchmarks.md.

    python -m bench.serve_load [--concurrency 500 --max-tokens 8 --disconnects 100]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import transformers

from bench.infer_throughput import BENCHMARKS_MD, HEADER, machine
from engine.ports import free_port

REPO = Path(__file__).resolve().parents[1]
SERVED = "m"
TOPICS = ["rivers", "ink", "mountains", "autumn", "bamboo", "boats", "poems", "the moon", "stones", "brushes"]
SERVE = (
    "import sys; from engine.serve.server import ServeArgs, run_server; "
    "run_server(ServeArgs(model_path=sys.argv[1], served_model_name='m', port=int(sys.argv[2]), "
    "device=sys.argv[3], dtype=sys.argv[4]))"
)


@dataclass
class Result:
    ttft: float | None = None
    """Seconds from sending to the first token."""
    total: float | None = None
    """Seconds from sending to `[DONE]`."""
    error: str | None = None


def body(i: int, max_tokens: int) -> dict:
    return {
        "model": SERVED,
        "messages": [{"role": "user", "content": f"Write about {TOPICS[i % len(TOPICS)]} ({i})."}],
        "max_tokens": max_tokens,
        "stream": True,
        "ignore_eos": True,
        "temperature": 0,
    }


async def stream_one(client: httpx.AsyncClient, url: str, payload: dict, hang_up_after_first: bool = False) -> Result:
    sent = time.perf_counter()
    result = Result()
    try:
        async with client.stream("POST", url, json=payload) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    result.total = time.perf_counter() - sent
                    break
                if '"error"' in data[:12]:
                    result.error = "error event"
                    return result
                if result.ttft is None and '"content":"' in data and '"content":""' not in data:
                    result.ttft = time.perf_counter() - sent
                    if hang_up_after_first:
                        return result  # leaving the block closes the connection mid-stream
    except httpx.HTTPError as exc:
        result.error = type(exc).__name__
        return result
    if result.total is None:
        result.error = "stream ended without [DONE]"
    elif result.ttft is None:
        result.error = "no token streamed"
    return result


async def engine_state(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    text = (await client.get(base + "/metrics")).text
    state = {}
    for key, name in (
        ("running", "num_requests_running"),
        ("waiting", "num_requests_waiting"),
        ("kv_blocks_used", "kv_cache_blocks_used"),
    ):
        state[key] = float(re.search(rf"^inkstone_{name} (\S+)$", text, re.M).group(1))
    aborted = re.search(r'^inkstone_request_success_total\{finish_reason="abort"\} (\S+)$', text, re.M)
    state["aborted"] = float(aborted.group(1)) if aborted else 0.0
    return state


async def wait_empty(client: httpx.AsyncClient, base: str, timeout: float) -> tuple[float | None, dict]:
    """Seconds until running, waiting and KV blocks in use are all 0 (None if not within timeout)."""
    start = time.perf_counter()
    while True:
        state = await engine_state(client, base)
        if state["running"] == state["waiting"] == state["kv_blocks_used"] == 0:
            return time.perf_counter() - start, state
        if time.perf_counter() - start > timeout:
            return None, state
        await asyncio.sleep(0.05)


async def run(base: str, args) -> dict:
    url = base + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=args.concurrency + 10, max_keepalive_connections=args.concurrency + 10)
    timeout = httpx.Timeout(args.request_timeout, connect=60)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        baseline = [await stream_one(client, url, body(i, args.max_tokens)) for i in range(args.baseline_requests)]
        if any(r.error for r in baseline):
            raise SystemExit(f"the unloaded requests failed: {[r.error for r in baseline]}")

        started = time.perf_counter()
        load = await asyncio.gather(
            *(stream_one(client, url, body(i, args.max_tokens)) for i in range(args.concurrency))
        )
        load_wall = time.perf_counter() - started
        load_drain, _ = await wait_empty(client, base, timeout=30)

        before = (await engine_state(client, base))["aborted"]
        storm = await asyncio.gather(
            *(
                stream_one(client, url, body(i, args.storm_tokens), hang_up_after_first=True)
                for i in range(args.disconnects)
            )
        )
        storm_drain, after = await wait_empty(client, base, timeout=60)
    return dict(
        baseline=baseline,
        load=load,
        load_wall=load_wall,
        load_drain=load_drain,
        storm=storm,
        storm_drain=storm_drain,
        aborted=after["aborted"] - before,
        final=after,
    )


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return at(0.5), at(0.9), at(0.99)


def summarize(out: dict, args) -> str:
    ok = [r for r in out["load"] if not r.error]
    errors = [r.error for r in out["load"] if r.error]
    base_ttft = statistics.median(r.ttft for r in out["baseline"])
    base_total = statistics.median(r.total for r in out["baseline"])
    parts = [
        f"{args.concurrency} concurrent streams x {args.max_tokens} tokens: {len(errors)} errors"
        + (f" ({', '.join(sorted(set(errors)))})" if errors else "")
        + f", {len(ok) / out['load_wall']:.1f} req/s ({out['load_wall']:.1f} s)"
    ]
    if ok:
        ttft, total = percentiles([r.ttft for r in ok]), percentiles([r.total for r in ok])
        parts.append("TTFT P50/P90/P99 {:.2f}/{:.2f}/{:.2f} s".format(*ttft))
        parts.append("total P50/P90/P99 {:.2f}/{:.2f}/{:.2f} s".format(*total))
        parts.append(
            f"unloaded (baseline, same run) TTFT {base_ttft * 1e3:.0f} ms, total {base_total * 1e3:.0f} ms; "
            f"P50 total loaded/unloaded = {total[0] / base_total:.1f}x"
        )
    parts.append(_drained("engine empty after the load", out["load_drain"]))
    storm_errors = [r.error for r in out["storm"] if r.error]
    parts.append(
        f"disconnect storm: {args.disconnects} clients hang up after their first token "
        f"({len(storm_errors)} failed before it), {out['aborted']:.0f} aborted by the server, "
        + _drained("engine empty", out["storm_drain"])
        + f" (running {out['final']['running']:.0f}, waiting {out['final']['waiting']:.0f}, "
        f"KV blocks used {out['final']['kv_blocks_used']:.0f})"
    )
    return "; ".join(parts)


def _drained(what: str, seconds: float | None) -> str:
    return f"{what} within {seconds:.2f} s" if seconds is not None else f"{what}: NOT within the timeout"


def start_server(model: str, port: int, args, log: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, model, str(port), args.device, args.dtype],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; its log: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not come up within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="HF folder (default: the bundled SmolLM2-135M)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--concurrency", type=int, default=500, help="streaming clients at once")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens each load request streams")
    parser.add_argument("--disconnects", type=int, default=100, help="clients in the disconnect storm")
    parser.add_argument("--storm-tokens", type=int, default=256, help="tokens a storm request would have streamed")
    parser.add_argument("--baseline-requests", type=int, default=5)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()
    if min(args.concurrency, args.max_tokens, args.disconnects, args.baseline_requests) < 1 or args.concurrency > 5000:
        parser.error("counts must be >= 1 and --concurrency at most 5000")
    # Each stream is a socket here and one in the server (which inherits this limit): raise the soft cap.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536 if hard == resource.RLIM_INFINITY else hard, hard))
    from engine.models.bundled import ensure_bundled_hf

    model = str((args.model or ensure_bundled_hf(REPO / ".data" / "test-models")).resolve())
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(model, port, args, Path(tmp) / "server.log")
        try:
            out = asyncio.run(asyncio.wait_for(run(f"http://127.0.0.1:{port}", args), args.time_limit))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    summary = summarize(out, args)
    print(summary)
    if not args.no_record:
        record(args, Path(model).name, summary)


def record(args, model: str, summary: str) -> None:
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(HEADER)
    software = f"transformers {transformers.__version__}, httpx {httpx.__version__}"
    note = "machine shared with other work while it ran"
    with BENCHMARKS_MD.open("a") as f:
        f.write(
            f"| {datetime.date.today().isoformat()} | bench/serve_load.py ({model}, {args.dtype}; {note}) | "
            f"{machine(args.device)} | {software} | {summary} |\n"
        )


if __name__ == "__main__":
    main()
