"""What the evaluation runner needs from a model, and the one that runs our engine in this process.

A backend answers two questions: the log-likelihood of continuations after contexts (PPL mode) and the text a
model writes after prompts (generation mode), plus rendering chat turns with the model's template. The runner
only sees this interface, so another model source (an OpenAI-compatible URL, llama.cpp for a GGUF) plugs in
without touching tasks, scoring or storage.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.progress import Progress, no_progress


@dataclass
class GenParams:
    max_tokens: int = 256
    """Generation budget per sample."""
    stop: tuple[str, ...] = ()
    """Stop strings (the text is cut before them)."""
    temperature: float = 0.0
    """0: greedy."""
    n: int = 1
    """Samples per prompt (pass@k)."""
    seed: int = 1234
    """Sampling seed (same seed, same samples)."""


class Backend(Protocol):
    identity: str
    """Names the model and everything that changes its outputs (weights, dtype): part of cache keys."""

    def render_chat(self, messages: list[dict]) -> str: ...

    def loglikelihood(self, pairs: list[tuple[str, str]], progress: Progress = no_progress,
                      cancel: threading.Event | None = None) -> list[tuple[float, bool]]: ...

    def generate(self, prompts: list[str], params: GenParams, progress: Progress = no_progress,
                 cancel: threading.Event | None = None) -> list[list[str]]: ...


def folder_identity(path: str | Path, dtype: str) -> str:
    """A model folder's identity: its path, dtype and the size and mtime of its weight and config files."""
    path = Path(path)
    parts = [str(path.resolve()), dtype]
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("config.json")) if path.is_dir() else [path]
    for f in files:
        stat = f.stat()
        parts.append(f"{f.name}:{stat.st_size}:{int(stat.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] + ":" + path.name


class EngineBackend:
    """Our LLMEngine in this process: PPL through LoglikScorer (prefix-shared) for an HF folder or
    GgufLoglikScorer (llama.cpp's logits, KV-shared contexts) for a GGUF, generation through `generate`."""

    def __init__(self, model_path: str, dtype: str = "auto", device: str = "auto", max_model_len: int | None = None,
                 cpu_kv_cache_gb: float = 2.0):
        from engine.infer.config import EngineConfig
        from engine.infer.llm_engine import LLMEngine

        self.engine = LLMEngine(model_path, EngineConfig(device=device, dtype=dtype, max_model_len=max_model_len,
                                                         cpu_kv_cache_gb=cpu_kv_cache_gb))
        self.tokenizer = self.engine.tokenizer
        self.identity = folder_identity(model_path, dtype)
        self._scorer = None

    def render_chat(self, messages: list[dict]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("style: the model has no chat template; use the base prompt style")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def loglikelihood(self, pairs, progress=no_progress, cancel=None):
        if self._scorer is None:
            if getattr(self.engine.runner, "supports_prompt_logprobs", False):
                from engine.eval.loglik import LoglikScorer

                self._scorer = LoglikScorer(self.engine)
            else:  # a GGUF: llama.cpp computes the logits, its KV cache shares each context across options
                from engine.eval.gguf_loglik import GgufLoglikScorer

                self._scorer = GgufLoglikScorer(self.engine.runner.llm, self.tokenizer)
        if self.engine.scheduler.waiting or self.engine.scheduler.running:
            raise RuntimeError("the engine is busy; score on an engine of your own")
        return self._scorer.score(pairs, progress, cancel)

    def generate(self, prompts, params, progress=no_progress, cancel=None):
        from engine.infer.sampling_params import SamplingParams
        from engine.progress import check_cancel

        sampling = SamplingParams(temperature=params.temperature, max_tokens=params.max_tokens,
                                  stop=[s for s in params.stop if s], n=params.n,
                                  seed=params.seed if params.temperature > 0 else None)
        room = self.engine.max_model_len - params.max_tokens
        if room < 1:
            raise ValueError(f"max_tokens: {params.max_tokens} leaves no room for a prompt "
                             f"(max_model_len {self.engine.max_model_len})")
        encoded = [self.tokenizer.encode(p, add_special_tokens=False)[-room:] or [self.tokenizer.eos_token_id]
                   for p in prompts]
        out: list[list[str]] = []
        step = 64  # chunks keep cancel responsive and progress moving
        for first in range(0, len(encoded), step):
            check_cancel(cancel)
            results = self.engine.generate(encoded[first:first + step], sampling)
            for i in range(0, len(results), params.n):
                out.append([r.text for r in results[i:i + params.n]])
            progress(fraction=len(out) / len(prompts), message=f"{len(out)}/{len(prompts)} prompts generated")
        return out
