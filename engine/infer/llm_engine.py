"""The engine's public face: add requests, call step() in a loop, read incremental outputs.

step() = schedule -> run the model once -> turn sampled tokens into outputs (stop checks, detokenization,
freeing finished sequences). It is not thread-safe: a server runs it in one thread and funnels add/abort
into that thread. `generate` is the offline batch loop over the same calls.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import torch
from transformers import AutoConfig, GenerationConfig

from engine.infer.block_manager import BlockManager
from engine.infer.config import EngineConfig
from engine.infer.detokenizer import Detokenizer
from engine.infer.model_runner import ModelRunner, StepResult
from engine.infer.models import model_class
from engine.infer.outputs import GenerationResult, RequestOutput
from engine.infer.sampling_params import SamplingParams
from engine.infer.scheduler import ScheduledBatch, Scheduler
from engine.infer.sequence import Sequence
from engine.infer.structured import StructuredOutput
from engine.models.loader import load_tokenizer, pick_device, pick_dtype
from engine.progress import Progress, no_progress

log = logging.getLogger(__name__)


def auto_cpu_dtype() -> torch.dtype:
    """bf16 on CPUs with native bf16 math (AVX512-BF16, AMX, Arm BF16), else fp32.

    Inference on the CPU is bound by matmul rate and weight bytes: on an AVX512-BF16 core (AMD EPYC) bf16 matmuls
    ran 3-4.5x fp32's rate, with half the bytes. Without native support bf16 is emulated and
    slower than fp32. Outputs then differ from an fp32 run in the last bits; dtype="float32" gives HF parity.
    """
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    native = any(caps.get(flag) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))
    return torch.bfloat16 if native else torch.float32


class LLMEngine:
    def __init__(self, model_path: str, config: EngineConfig | None = None):
        """model_path: an HF folder (our own model runner) or a .gguf file (llama.cpp computes the logits)."""
        self.config = config = config or EngineConfig()
        config.validate()
        path = Path(model_path)
        if path.suffix.lower() == ".gguf":
            self._start_llama_cpp(path, config)
        else:
            self._start_own_runner(path, config)
        self.requests: dict[str, list[Sequence]] = {}
        # Samples 1..n-1 of a request wait until sample 0 has computed (and cached) the prompt.
        self.deferred: dict[str, list[Sequence]] = {}
        self.pending: list[RequestOutput] = []
        self.counters = dict(prompt_tokens=0, cached_prompt_tokens=0, generation_tokens=0, requests_finished=0)
        self._grammar = None
        self._grammar_lock = threading.Lock()

    def _start_own_runner(self, path: Path, config: EngineConfig) -> None:
        hf_config = AutoConfig.from_pretrained(str(path))
        model_class(hf_config.model_type)
        self.tokenizer = load_tokenizer(path)
        self.vocab_size = hf_config.vocab_size
        device = torch.device(pick_device(config.device))
        if device.type == "cpu" and config.dtype == "auto":
            dtype = auto_cpu_dtype()
        else:
            dtype = pick_dtype(device.type, config.dtype)
        model_len = _model_max_len(hf_config)
        if config.max_model_len is not None and config.max_model_len > model_len:
            raise ValueError(f"max_model_len: {config.max_model_len} exceeds the model's {model_len}")
        max_position = config.max_model_len or model_len
        self.runner = ModelRunner(str(path), hf_config, config, device, dtype, max_position)
        num_blocks = self.runner.plan_num_blocks()
        kv_tokens = num_blocks * config.block_size
        if config.max_model_len is not None and config.max_model_len > kv_tokens:
            raise ValueError(f"max_model_len: {config.max_model_len} tokens, but only {kv_tokens} tokens of KV "
                             f"fit; lower max_model_len or give the KV cache more memory")
        if kv_tokens == 0:
            raise ValueError("num_kv_blocks: no KV cache block fits in the memory budget")
        self.max_model_len = min(max_position, kv_tokens)
        log.info("%d tokens of KV fit (%d blocks of %d, %s %s); max_model_len %d", kv_tokens, num_blocks,
                 config.block_size, device, dtype, self.max_model_len)
        self.runner.allocate_kv_cache(num_blocks, self.max_model_len)
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        self.eos_ids = _eos_ids(path, self.tokenizer)

    def _start_llama_cpp(self, path: Path, config: EngineConfig) -> None:
        from engine.infer.gguf_runner import ContextBlocks, LlamaCppRunner, SerialScheduler

        self.runner = LlamaCppRunner(path, config)
        self.tokenizer = self.runner.tokenizer
        self.vocab_size = self.runner.n_vocab
        self.max_model_len = self.runner.max_model_len
        self.block_manager = ContextBlocks(self.runner.llm)
        self.scheduler = SerialScheduler(self.block_manager)
        self.eos_ids = self.runner.eos_ids

    # ---- requests -----------------------------------------------------------------------------------

    def add_request(self, prompt: str | list[int], params: SamplingParams, request_id: str | None = None) -> str:
        """Queue a prompt (text, encoded with the tokenizer's special tokens, or token ids); returns its id."""
        params.validate()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self._check_prompt(ids, params)
        request_id = request_id if request_id is not None else uuid.uuid4().hex
        if request_id in self.requests:
            raise ValueError(f"request_id: {request_id!r} is already in use")
        compiled = self.compile_structured(params.structured_output) if params.structured_output else None
        seqs = [Sequence(request_id, i, ids, params, Detokenizer(self.tokenizer, ids, params.stop))
                for i in range(params.n)]
        if compiled is not None:
            for seq in seqs:  # each sample walks the grammar on its own
                seq.matcher = self.grammar_backend().new_matcher(compiled)
        self.requests[request_id] = seqs
        share_prompt = params.n > 1 and self.config.enable_prefix_caching
        for seq in seqs[:1] if share_prompt else seqs:
            self.scheduler.add(seq)
        if share_prompt:
            self.deferred[request_id] = seqs[1:]
        return request_id

    def _check_prompt(self, ids: list[int], params: SamplingParams) -> None:
        if not ids:
            raise ValueError("prompt: must not be empty")
        if params.prompt_logprobs is not None and not self.runner.supports_prompt_logprobs:
            raise ValueError("prompt_logprobs: not available for a GGUF model (llama.cpp keeps only the last "
                             "position's logits); serve its HF folder instead")
        if not all(isinstance(t, int) and 0 <= t < self.vocab_size for t in ids):
            raise ValueError(f"prompt: token ids must be integers in [0, {self.vocab_size})")
        if len(ids) >= self.max_model_len:
            raise ValueError(f"prompt: {len(ids)} tokens leaves no room to generate (max_model_len "
                             f"{self.max_model_len})")
        if len(ids) + params.max_tokens > self.max_model_len:
            raise ValueError(f"max_tokens: prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                             f"max_model_len {self.max_model_len}")

    def grammar_backend(self):
        """The xgrammar backend for this engine's tokenizer, built on first use (reading the vocab takes ~1 s)."""
        with self._grammar_lock:
            if self._grammar is None:
                from engine.infer.structured_grammar import GrammarBackend

                self._grammar = GrammarBackend(self.tokenizer, self.vocab_size, self.eos_ids)
            return self._grammar

    def compile_structured(self, spec: StructuredOutput):
        """Compile (or fetch from the cache) spec's grammar; ValueError naming what xgrammar does not support.

        Thread-safe, so a server can compile in its request handler before queueing the request.
        """
        spec.validate()
        return self.grammar_backend().compile(spec)

    def abort_request(self, request_id: str) -> None:
        """Stop a request wherever it is; its blocks are freed and the next step() reports it finished."""
        seqs = self.requests.get(request_id)
        if seqs is None:
            return
        self.deferred.pop(request_id, None)
        for seq in seqs:
            if not seq.is_finished:
                self._finish(seq, "abort")
                self.pending.append(self._output(seq))

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests or self.pending)

    # ---- one step -----------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        outputs, self.pending = self.pending, []
        batch = self.scheduler.schedule()
        if batch:
            self._hand_over_grammar_mask(batch)
            try:
                result = self.runner.run(batch)
            finally:  # a runner that failed before sampling must not leave its mask to the next step
                self.runner.sampler.next_mask = None
            outputs.extend(self._postprocess(batch, result))
        return outputs

    def _hand_over_grammar_mask(self, batch: ScheduledBatch) -> None:
        """Give the sampler the token mask of this step's constrained rows (rows = sequences that sample)."""
        if self._grammar is None:
            return
        sampling = [seq.matcher for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True)
                    if seq.num_computed_tokens + n == len(seq)]
        if any(m is not None for m in sampling):
            self.runner.sampler.next_mask = self._grammar.mask(sampling)

    def _postprocess(self, batch: ScheduledBatch, result: StepResult) -> list[RequestOutput]:
        outputs = []
        for row, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True)):
            seq.num_computed_tokens += n
            self.block_manager.cache_full_blocks(seq)
            if row in result.prompt_logprobs:
                seq.prompt_logprobs = (seq.prompt_logprobs or [None]) + result.prompt_logprobs[row]
            if row not in result.sampled:
                continue
            token, logprob, error = result.sampled[row]
            if seq.num_output_tokens == 0:
                self._first_token(seq)
            if error is not None:
                self._finish(seq, "error", error)
            else:
                seq.token_ids.append(token)
                seq.pending_token_ids.append(token)
                if logprob is not None:
                    seq.pending_logprobs.append(logprob)
                self.counters["generation_tokens"] += 1
                reason = self._stop_reason(seq, token)
                if seq.matcher is not None:
                    reason = self._grammar_step(seq, token, reason)
                if reason is not None:
                    self._finish(seq, reason, seq.error)
            outputs.append(self._output(seq))
        return outputs

    def _first_token(self, seq: Sequence) -> None:
        self.counters["prompt_tokens"] += seq.num_prompt_tokens
        self.counters["cached_prompt_tokens"] += seq.num_cached_tokens
        for sibling in self.deferred.pop(seq.request_id, []):
            self.scheduler.add(sibling)

    def _stop_reason(self, seq: Sequence, token: int) -> str | None:
        params = seq.params
        if token in params.stop_token_ids or (not params.ignore_eos and token in self.eos_ids):
            return "stop"
        if seq.detokenizer.add_token(token):
            return "stop"
        if seq.num_output_tokens >= params.max_tokens or len(seq) >= self.max_model_len:
            return "length"
        return None

    def _grammar_step(self, seq: Sequence, token: int, reason: str | None) -> str | None:
        """Feed the sampled token to the sequence's matcher; a finished grammar ends the sequence."""
        if not seq.matcher.accept_token(token):
            # Cannot happen for a token drawn under the mask; a stop token the grammar did not allow yet ends here.
            if reason is None:
                seq.error = f"token {token} is outside the grammar"
                return "error"
            return reason
        if reason is None and seq.matcher.is_terminated():
            return "stop"
        return reason

    def _finish(self, seq: Sequence, reason: str, error: str | None = None) -> None:
        seq.finish_reason, seq.error = reason, error
        self.scheduler.finish(seq)
        self.counters["requests_finished"] += 1

    def _output(self, seq: Sequence) -> RequestOutput:
        finished = seq.is_finished
        prompt_logprobs = None
        if seq.wants_prompt_logprobs and seq.num_output_tokens + (seq.error is not None) > 0:
            prompt_logprobs = seq.prompt_logprobs or [None]
            seq.prompt_logprobs_sent = True
        out = RequestOutput(
            request_id=seq.request_id, index=seq.index, new_token_ids=seq.pending_token_ids,
            new_text=seq.detokenizer.take(finished), finished=finished, finish_reason=seq.finish_reason,
            error=seq.error, logprobs=seq.pending_logprobs if seq.params.logprobs is not None else None,
            prompt_logprobs=prompt_logprobs, num_prompt_tokens=seq.num_prompt_tokens,
            num_cached_tokens=seq.num_cached_tokens, num_output_tokens=seq.num_output_tokens,
        )
        seq.pending_token_ids, seq.pending_logprobs = [], []
        if finished and all(s.is_finished for s in self.requests.get(seq.request_id, [])):
            self.requests.pop(seq.request_id, None)
        return out

    # ---- reporting and offline use ---------------------------------------------------------------------

    def stats(self) -> dict:
        return dict(
            running=len(self.scheduler.running), waiting=len(self.scheduler.waiting),
            kv_blocks_total=self.block_manager.num_blocks, kv_blocks_used=self.block_manager.num_used_blocks,
            preemptions=self.scheduler.num_preemptions, **self.counters,
        )

    def generate(self, prompts: list[str | list[int]], params: SamplingParams | list[SamplingParams],
                 progress: Progress = no_progress) -> list[GenerationResult]:
        """Run prompts to completion; one result per prompt and sample (prompt-major when n > 1)."""
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"params: {len(params)} given for {len(prompts)} prompts")
        slots: dict[tuple[str, int], GenerationResult] = {}
        order = []
        try:
            for prompt, p in zip(prompts, params, strict=True):
                rid = self.add_request(prompt, p)
                for i in range(p.n):
                    slots[(rid, i)] = GenerationResult("", [], "", 0)
                    order.append((rid, i))
        except ValueError:
            # One bad prompt fails the whole batch: take back the ones already queued.
            added = {rid for rid, _ in order}
            for rid in added:
                self.abort_request(rid)
            self.pending = [o for o in self.pending if o.request_id not in added]
            raise
        done = 0
        while self.has_unfinished_requests():
            for out in self.step():
                result = slots.get((out.request_id, out.index))
                if result is None:
                    continue
                result.text += out.new_text
                result.token_ids.extend(out.new_token_ids)
                result.num_cached_tokens = out.num_cached_tokens
                if out.finished:
                    result.finish_reason = out.finish_reason
                    done += 1
                    progress(fraction=done / len(order), message=f"{done}/{len(order)} sequences done")
        return [slots[key] for key in order]


def _model_max_len(hf_config) -> int:
    length = getattr(hf_config, "max_position_embeddings", None) or 2048
    window = getattr(hf_config, "sliding_window", None)
    uses_window = hf_config.model_type != "qwen2" or getattr(hf_config, "use_sliding_window", False)
    if window and uses_window and window < length:
        # Full attention past the window would not match the model; stay within it instead.
        log.info("capping max_model_len at the sliding window (%d)", window)
        length = window
    return length


def _eos_ids(path: Path, tokenizer) -> set[int]:
    ids: set[int] = set()
    try:
        eos = GenerationConfig.from_pretrained(str(path)).eos_token_id
    except OSError:
        eos = None
    for value in eos if isinstance(eos, list) else [eos]:
        if value is not None:
            ids.add(int(value))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
