"""Run a GGUF file through llama.cpp behind our engine's own request handling.

llama.cpp computes the next-token logits; everything a request sees — sampling (penalties, seeds, min-p,
logprobs), stop strings and ids, incremental detokenization, n samples, abort, usage counts — is the same code
that serves our own model runner. So an exported GGUF chats through the same OpenAI server and Chat page, with
the same sampling semantics, as the model it came from (and a GGUF from elsewhere works the same way).

llama-cpp-python's context holds the KV of one sequence, so requests run one after another, oldest first. The
context keeps the last sequence's tokens, and the next one reuses the longest common prefix: a multi-turn chat
re-sends its history, only the new turn is computed, and the reuse is reported as cached prompt tokens.
Prompt logprobs would need the logits of every prompt position kept for the whole context; they are refused.
"""

from __future__ import annotations

import ctypes
import logging
import os
import weakref
from collections import deque
from pathlib import Path

import numpy as np
import torch

from engine.infer.config import EngineConfig
from engine.infer.layers.sampler import Sampler
from engine.infer.model_runner import StepResult
from engine.infer.scheduler import ScheduledBatch
from engine.infer.sequence import Sequence, SequenceStatus

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096
"""Context when none is asked for: a model trained on 128k would otherwise reserve KV for all of it."""


def _threads() -> int:
    # llama.cpp's default is half the CPUs; on a small machine using all of them doubles decode speed.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _gpu_layers(device: str) -> int:
    import llama_cpp

    can_offload = bool(llama_cpp.llama_supports_gpu_offload())
    if device.startswith("cuda") and not can_offload:
        raise ValueError(f"device: {device!r}, but this llama.cpp build has no GPU support; use 'cpu' or 'auto'")
    return -1 if device != "cpu" and can_offload else 0


def _trained_context(path: Path) -> int:
    """The context length the GGUF declares, read before any context is made (a huge one takes minutes)."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with suppress_stdout_stderr(disable=False):  # llama.cpp prints its whole vocab summary here
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ValueError(f"model: {path} is not a GGUF file llama.cpp can load")
    try:
        value = ctypes.create_string_buffer(256)
        if llama_cpp.llama_model_meta_val_str(model, b"general.architecture", value, len(value)) < 0:
            return 0
        key = value.value + b".context_length"
        return int(value.value) if llama_cpp.llama_model_meta_val_str(model, key, value, len(value)) > 0 else 0
    finally:
        llama_cpp.llama_model_free(model)


class ContextBlocks:
    """The block manager's place for llama.cpp: its context is one block of n_ctx one-token slots."""

    block_size = 1

    def __init__(self, llm):
        self.llm = llm

    @property
    def num_blocks(self) -> int:
        return self.llm.n_ctx()

    @property
    def num_used_blocks(self) -> int:
        return self.llm.n_tokens

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Nothing to register: the context itself keeps the last sequence's tokens for reuse."""


class SerialScheduler:
    """Oldest sequence first, alone in the batch, until it finishes; the rest wait in arrival order."""

    def __init__(self, block_manager: ContextBlocks):
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> ScheduledBatch:
        if not self.running and self.waiting:
            seq = self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
        batch = ScheduledBatch()
        for seq in self.running:
            batch.seqs.append(seq)
            batch.num_new_tokens.append(len(seq) - seq.num_computed_tokens)
        return batch

    def finish(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED


class LlamaCppRunner:
    """Loads the GGUF into a llama.cpp context and turns a one-sequence batch into a sampled token."""

    supports_prompt_logprobs = False

    def __init__(self, path: Path, config: EngineConfig):
        from llama_cpp import Llama
        from transformers import AutoTokenizer

        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        trained = _trained_context(path)
        if config.max_model_len and trained and config.max_model_len > trained:
            raise ValueError(f"max_model_len: {config.max_model_len} exceeds the model's {trained}")
        n_ctx = config.max_model_len or min(trained or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
        # The HF tokenizer rebuilt from the GGUF's own vocab: our detokenizer and chat templates need it, and
        # export verification checks it tokenizes like llama.cpp.
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=_threads(),
                         n_gpu_layers=_gpu_layers(config.device), verbose=False)
        weakref.finalize(self, self.llm.close)  # now, not in interpreter teardown where llama_cpp's globals are gone
        self.max_model_len = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self.eos_ids = {self.llm.token_eos()} | ({self.tokenizer.eos_token_id} - {None})
        eot = self.llm.metadata.get("tokenizer.ggml.eot_token_id")
        if eot is not None:
            self.eos_ids.add(int(eot))
        self.sampler = Sampler()
        log.info("llama.cpp context of %d tokens for %s (%d threads)", self.max_model_len, path.name, _threads())

    def run(self, batch: ScheduledBatch) -> StepResult:
        (seq,) = batch.seqs
        result = StepResult({}, {})
        try:
            logits = self._advance(seq)
        except Exception as exc:  # a failed decode ends this request, not the server
            self.llm.reset()
            result.sampled[0] = (0, None, f"llama.cpp decode failed: {exc}")
            return result
        params = seq.params
        needs_history = params.repetition_penalty != 1 or params.frequency_penalty or params.presence_penalty
        out = self.sampler(logits, [params], [seq.token_ids if needs_history else []], [seq.num_prompt_tokens],
                           [seq.generator])
        result.sampled[0] = (out.token_ids[0], out.logprobs[0], out.errors[0])
        return result

    def _advance(self, seq: Sequence) -> torch.Tensor:
        """Bring the context to hold seq's tokens, computing only what it lacks; logits of the last one."""
        import llama_cpp

        held = self.llm.input_ids[: self.llm.n_tokens]
        limit = min(len(held), len(seq) - 1)  # at least one token is evaluated, for its logits
        mismatch = np.flatnonzero(held[:limit] != np.asarray(seq.token_ids[:limit]))
        reused = int(mismatch[0]) if mismatch.size else limit
        if seq.num_computed_tokens == 0:
            seq.num_cached_tokens = reused
        self.llm.n_tokens = reused  # eval drops the KV past this point before appending
        self.llm.eval(seq.token_ids[reused:])
        row = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()).unsqueeze(0)
