"""The llama.cpp side of bench/infer_throughput.py, and our side as the Chat page sees it (streamed over HTTP).

What a CPU user would pick instead of us is llama.cpp, so the CPU benchmark runs it in the same run, same
threads: the F16 GGUF of the same model (written by our own exporter) and the bundled Q4_1 file. Our batch-1
number is taken where the user meets it, streamed through `inkstone serve` (a server process, SSE chunks timed
by the client), not from the engine alone; the server runs its engine core in a process of its own, as
`inkstone serve` does (engine/serve/engine_core.py). llama-cpp-python serves one request at a time, so its
mixed-workload number is the requests run back to back.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

from bench.serve_latency import Server, start, stop

REPO = Path(__file__).resolve().parents[1]


def f16_gguf(model_dir: Path, threads: int) -> Path:
    """The model as an F16 GGUF from engine/export, written once under .data/bench-gguf/."""
    from engine.export.exporter import ExportRequest, export_gguf

    out = REPO / ".data" / "bench-gguf" / model_dir.name
    path = out / f"{model_dir.name}.F16.gguf"
    if not path.exists():
        export_gguf(ExportRequest(str(model_dir), "f16", str(out), name=model_dir.name, verify=False,
                                  threads=threads))
        found = sorted(out.glob("*.gguf"))
        found[0].rename(path)
    return path


class LlamaCpp:
    """One llama.cpp model in this process, greedy, EOS banned so every request runs its full length."""

    def __init__(self, path: Path, threads: int, n_ctx: int = 2048):
        from llama_cpp import Llama

        self.name = path.name
        self.llm = Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.no_eos = {self.llm.token_eos(): float("-inf")}

    def decode_rate(self, prompt: list[int], tokens: int) -> float:
        """Decode tok/s of one greedy generation: tokens after the first over the time between them.

        Timed per token from llama.cpp's own token generator, not from create_completion's stream: the stream
        holds back tokens that end inside a UTF-8 character, and a greedy run of byte tokens then arrived all at
        once (once seen as 141936 tok/s)."""
        self.llm.reset()
        stamps = []
        for _ in self.llm.generate(prompt, temp=0, logits_processor=[self._ban_eos]):
            stamps.append(time.perf_counter())
            if len(stamps) == tokens:
                break
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def _ban_eos(self, input_ids, scores):
        for token, bias in self.no_eos.items():
            scores[token] = bias
        return scores

    def serial_throughput(self, prompts: list[list[int]], output_lens: list[int]) -> float:
        """Output tok/s of the requests served one after another, as llama-cpp-python's server does."""
        start_at = time.perf_counter()
        for prompt, n in zip(prompts, output_lens, strict=True):
            self.llm.reset()
            self.llm.create_completion(prompt, max_tokens=n, temperature=0, logit_bias=self.no_eos)
        return sum(output_lens) / (time.perf_counter() - start_at)

    def prefill_rate(self, prompt: list[int]) -> float:
        self.llm.reset()
        start_at = time.perf_counter()
        self.llm.eval(prompt)
        return len(prompt) / (time.perf_counter() - start_at)


class ServedModel:
    """`inkstone serve` of the model in its own process (what the Chat page talks to), with `threads` torch
    threads; compiled CPU decode unless eager."""

    def __init__(self, model_dir: Path, port: int, threads: int, dtype: str, eager: bool, log: Path):
        code = ("import logging, sys, torch; torch.set_num_threads(int(sys.argv[3])); "
                "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s'); "
                "from engine.serve.server import ServeArgs, run_server; "
                "run_server(ServeArgs(model_path=sys.argv[1], served_model_name='m', port=int(sys.argv[2]), "
                "device='cpu', dtype=sys.argv[4], enforce_eager=sys.argv[5] == '1', "
                "compile_cache_dir=sys.argv[6]))")
        cache = str(REPO / ".data" / "inductor-cache")
        self.server = Server("inkstone serve", [sys.executable, "-c", code, str(model_dir), str(port), str(threads),
                                                dtype, "1" if eager else "0", cache], "m", {})
        self.url = f"http://127.0.0.1:{port}/v1/completions"
        self.log = log
        start(self.server, port, log)

    def decode_rate(self, prompt: list[int], tokens: int) -> float:
        """Decode tok/s of one streamed completion as the client sees it: SSE chunks after the first."""
        stamps = []
        body = dict(model="m", prompt=prompt, max_tokens=tokens, temperature=0, ignore_eos=True, stream=True)
        with httpx.stream("POST", self.url, json=body, timeout=600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0].get("text"):
                    stamps.append(time.perf_counter())
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def prefill_rate(self, prompt: list[int]) -> float:
        """Prompt tok/s as the client sees it: the prompt's length over the time to its first streamed token."""
        body = dict(model="m", prompt=prompt, max_tokens=1, temperature=0, ignore_eos=True, stream=True)
        start_at = time.perf_counter()
        with httpx.stream("POST", self.url, json=body, timeout=600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    return len(prompt) / (time.perf_counter() - start_at)
        raise RuntimeError("the server streamed no token")

    def wait_compiled(self, prompt: list[int], timeout: float = 1800) -> None:
        """Send short requests until the server log says the batch-1 graph is compiled (or it runs eagerly)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.decode_rate(prompt, 4)
            text = self.log.read_text(errors="replace")
            if "compiled in" in text or "stays eager" in text:
                return
            time.sleep(5)
        raise SystemExit(f"the server did not finish compiling within {timeout:.0f} s; its log: {self.log}")

    def close(self) -> None:
        stop(self.server)
