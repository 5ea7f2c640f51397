"""Runs the model for one scheduled step: builds the flat varlen inputs, owns the KV cache and CUDA graphs.

Everything device-specific lives here. On CPU the model runs in bf16 where the CPU has it natively, with a KV
cache sized from cpu_kv_cache_gb; prefill runs eagerly, decode-only steps run eagerly or, with compile_cpu,
through torch.compile'd graphs per batch-size bucket (cpu_graphs.py). On CUDA the cache takes what is left of
gpu_memory_utilization after a warm-up forward at the full token budget has measured peak activation memory;
decode-only steps replay CUDA graphs captured per batch-size bucket (their Python overhead per step is what
dominates small-batch decode), unless enforce_eager.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from engine.infer import cpu_kernels
from engine.infer.config import EngineConfig
from engine.infer.cpu_graphs import CpuDecodeGraphs
from engine.infer.layers.activation import SiluAndMul
from engine.infer.layers.attention import AttentionMetadata
from engine.infer.layers.bf16_linear import use_bf16_kernel
from engine.infer.layers.fp16_weights import fp16_weights_supported, use_fp16_weights
from engine.infer.layers.norm import RMSNorm
from engine.infer.layers.rotary import RotaryEmbedding
from engine.infer.layers.sampler import Sampler, SamplerOutput, top_logprobs
from engine.infer.models import model_class
from engine.infer.outputs import TokenLogprob
from engine.infer.scheduler import ScheduledBatch
from engine.infer.sequence import Sequence

log = logging.getLogger(__name__)

GRAPH_BATCH_SIZES = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512]


@dataclass
class StepInputs:
    input_ids: torch.Tensor
    """[T] tokens of all scheduled sequences, decodes first."""
    positions: torch.Tensor
    """[T] absolute position of each token."""
    meta: AttentionMetadata
    """Cache slots and per-sequence lengths for the attention layers."""
    sample_rows: list[int]
    """Batch index of each sequence that samples a token this step (its chunk reaches its last token)."""
    last_token_index: torch.Tensor
    """[len(sample_rows)] flat index of those sequences' last token."""
    prompt_logprob_rows: list[tuple[int, int, int]]
    """(batch index, first flat index, count) of chunks whose prompt logprobs are wanted."""


@dataclass
class StepResult:
    sampled: dict[int, tuple[int, TokenLogprob | None, str | None]]
    """Batch index -> (token, logprob entry, error) for the sequences that sampled."""
    prompt_logprobs: dict[int, list[TokenLogprob]]
    """Batch index -> entries for the prompt tokens this step's chunk predicted."""


class ModelRunner:
    supports_prompt_logprobs = True

    def __init__(self, model_path: str, hf_config, config: EngineConfig, device: torch.device,
                 dtype: torch.dtype, max_position: int):
        self.config = config
        self.device = device
        self.dtype = dtype
        self.block_size = config.block_size
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                self.model = model_class(hf_config.model_type)(hf_config, max_position)
        finally:
            torch.set_default_dtype(default_dtype)
        self.model_path = model_path
        self.model.load_weights(model_path)
        self.model.eval()
        self.fp16_weights = False
        """fp32 compute over fp16 weights (dtype "auto" on a CPU without native bf16, through our C++ kernel or,
        where it could not be built, FBGEMM's)."""
        if device.type == "cpu" and config.dtype == "auto" and dtype == torch.float32 and (
                cpu_kernels.available() or fp16_weights_supported()):
            self.fp16_weights = use_fp16_weights(self.model) > 0
            log.info("CPU without native bf16: fp32 compute over fp16 weights (%s)",
                     "our kernel" if cpu_kernels.available() else "FBGEMM")
            if self.fp16_weights and cpu_kernels.available():
                # The eager steps' RMSNorm, rotary and SiLU-mul in one pass each: ~10% of a long prefill. Not in
                # exact fp32 (dtype "float32"), which keeps the torch ops and bit-for-bit parity with HF.
                for module in self.model.modules():
                    if isinstance(module, (RMSNorm, RotaryEmbedding, SiluAndMul)):
                        module.use_cpu_kernels()
        self.bf16_kernel = False
        """bf16 linears through our streaming kernel at decode sizes (dtype "auto" on a CPU with AVX512-BF16)."""
        if device.type == "cpu" and config.dtype == "auto" and dtype == torch.bfloat16 and (
                cpu_kernels.available() and cpu_kernels.linear_bf16_max_rows() > 0):
            self.bf16_kernel = use_bf16_kernel(self.model) > 0
        self.max_position = max_position
        self.sampler = Sampler()
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.cpu_graphs: CpuDecodeGraphs | None = None
        self.kv_cache: torch.Tensor | None = None
        self.num_blocks = 0
        self.max_blocks_per_seq = 0

    # ---- KV cache -------------------------------------------------------------------------------------

    def block_bytes(self) -> int:
        cfg = self.model.config
        per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * self.model.layers[0].self_attn.head_dim
        return per_token * self.block_size * torch.tensor([], dtype=self.dtype).element_size()

    def plan_num_blocks(self) -> int:
        if self.config.num_kv_blocks is not None:
            return self.config.num_kv_blocks
        if self.device.type != "cuda":
            return int(self.config.cpu_kv_cache_gb * 1024**3) // self.block_bytes()
        return self._cuda_free_blocks()

    @torch.inference_mode()
    def _cuda_free_blocks(self) -> int:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        tokens = self.config.max_num_batched_tokens
        ids = torch.zeros(tokens, dtype=torch.long, device=self.device)
        meta = _empty_meta(self.device, tokens)
        positions = torch.arange(tokens, device=self.device) % self.max_position
        hidden = self.model(ids, positions, meta)
        self.model.compute_logits(hidden, torch.arange(min(tokens, self.config.max_num_seqs), device=self.device))
        torch.cuda.synchronize()
        del hidden
        # Give the warm-up's activations back, so "used" below is weights and context, and count them once.
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(self.device)
        stats = torch.cuda.memory_stats(self.device)
        activations = stats["allocated_bytes.all.peak"] - stats["allocated_bytes.all.current"]
        budget = total * self.config.gpu_memory_utilization - (total - free) - activations
        return max(0, int(budget) // self.block_bytes())

    def allocate_kv_cache(self, num_blocks: int, max_model_len: int) -> None:
        cfg = self.model.config
        attn = self.model.layers[0].self_attn
        # torch.empty: on CPU the pages of an unused budget are never touched, so never committed.
        self.kv_cache = torch.empty(2, cfg.num_hidden_layers, num_blocks, self.block_size, attn.num_kv_heads,
                                    attn.head_dim, dtype=self.dtype, device=self.device)
        for i, layer in enumerate(self.model.attention_layers()):
            layer.k_cache, layer.v_cache = self.kv_cache[0, i], self.kv_cache[1, i]
            layer.kv_cache, layer.layer_index = self.kv_cache, i
        self.num_blocks = num_blocks
        bs = self.block_size
        self.max_blocks_per_seq = (max_model_len + bs - 1) // bs
        if self.device.type == "cuda":
            for layer in self.model.attention_layers():
                layer.use_triton_kernels()
        elif cpu_kernels.available():
            for layer in self.model.attention_layers():
                layer.native_cpu_decode = True
        if self.device.type == "cpu" and self.config.compile_cpu and not self.config.enforce_eager:
            self.cpu_graphs = CpuDecodeGraphs(self.model, self.config.max_num_seqs, self.max_blocks_per_seq,
                                              self.config.compile_cache_dir)
        if self.device.type == "cuda" and not self.config.enforce_eager:
            for module in self.model.modules():
                if isinstance(module, (RMSNorm, RotaryEmbedding, SiluAndMul)):
                    module.use_compiled()
            self._capture_graphs()

    # ---- one step ---------------------------------------------------------------------------------------

    def prepare(self, batch: ScheduledBatch) -> StepInputs:
        bs = self.block_size
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        seq_lens: list[int] = []
        cu = [0]
        sample_rows: list[int] = []
        last_index: list[int] = []
        prompt_rows: list[tuple[int, int, int]] = []
        num_decodes = 0
        for row, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True)):
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
            if n == 1 and num_decodes == row:
                num_decodes += 1
            ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            table = seq.block_table
            for b in range(start // bs, (end - 1) // bs + 1):
                lo, hi = max(start, b * bs), min(end, (b + 1) * bs)
                base = table[b] * bs - b * bs
                slots.extend(range(base + lo, base + hi))
            if seq.wants_prompt_logprobs and start + 1 < seq.num_prompt_tokens:
                count = min(end, seq.num_prompt_tokens - 1) - start
                prompt_rows.append((row, cu[-1], count))
            cu.append(cu[-1] + n)
            seq_lens.append(end)
            if end == len(seq):
                sample_rows.append(row)
                last_index.append(cu[-1] - 1)
        tables = _block_tables([s.block_table for s in batch.seqs])
        dev = self.device
        lens = torch.tensor(seq_lens, dtype=torch.int32)
        nd = num_decodes
        meta = AttentionMetadata(
            slot_mapping=_to(torch.tensor(slots, dtype=torch.long), dev),
            num_decodes=nd,
            decode_seq_lens=_to(lens[:nd], dev),
            decode_block_tables=_to(tables[:nd], dev),
            prefill_cu_seqlens_q=_to(torch.tensor(cu[nd:], dtype=torch.int32) - cu[nd], dev),
            prefill_seq_lens=_to(lens[nd:], dev),
            prefill_block_tables=_to(tables[nd:], dev),
        )
        return StepInputs(
            input_ids=_to(torch.tensor(ids, dtype=torch.long), dev),
            positions=_to(torch.tensor(positions, dtype=torch.long), dev),
            meta=meta, sample_rows=sample_rows,
            last_token_index=_to(torch.tensor(last_index, dtype=torch.long), dev),
            prompt_logprob_rows=prompt_rows,
        )

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> StepResult:
        inputs = self.prepare(batch)
        hidden = self._forward(inputs)
        result = StepResult({}, {})
        for row, first, count in inputs.prompt_logprob_rows:
            seq = batch.seqs[row]
            start = seq.num_computed_tokens
            rows = torch.arange(first, first + count, device=self.device)
            logprobs = self.model.compute_logits(hidden, rows).log_softmax(-1)
            targets = torch.tensor(seq.token_ids[start + 1:start + 1 + count], device=self.device)
            result.prompt_logprobs[row] = top_logprobs(logprobs, targets, [seq.params.prompt_logprobs] * count)
        if inputs.sample_rows:
            logits = self.model.compute_logits(hidden, inputs.last_token_index)
            seqs = [batch.seqs[r] for r in inputs.sample_rows]
            out = self._sample(logits, seqs)
            for i, row in enumerate(inputs.sample_rows):
                result.sampled[row] = (out.token_ids[i], out.logprobs[i], out.errors[i])
        return result

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> SamplerOutput:
        params = [s.params for s in seqs]
        needs_history = any(p.repetition_penalty != 1 or p.frequency_penalty or p.presence_penalty for p in params)
        history = [s.token_ids for s in seqs] if needs_history else [[] for _ in seqs]
        return self.sampler(logits, params, history, [s.num_prompt_tokens for s in seqs],
                            [s.generator for s in seqs])

    def _forward(self, inputs: StepInputs) -> torch.Tensor:
        batch_size = inputs.meta.num_decodes
        if (self.graphs and batch_size == inputs.input_ids.shape[0] and batch_size <= max(self.graphs)):
            return self._replay(inputs)
        if self.cpu_graphs is not None and batch_size == inputs.input_ids.shape[0]:
            hidden = self.cpu_graphs.run(inputs.input_ids, inputs.positions, inputs.meta)
            if hidden is not None:
                return hidden
        return self.model(inputs.input_ids, inputs.positions, inputs.meta)

    # ---- CUDA graphs (decode only) ------------------------------------------------------------------

    @torch.inference_mode()
    def _capture_graphs(self) -> None:
        max_bs = min(self.config.max_num_seqs, GRAPH_BATCH_SIZES[-1])
        sizes = [b for b in GRAPH_BATCH_SIZES if b <= max_bs]
        dev = self.device
        self.graph_vars = dict(
            input_ids=torch.zeros(max_bs, dtype=torch.long, device=dev),
            positions=torch.zeros(max_bs, dtype=torch.long, device=dev),
            slot_mapping=torch.full((max_bs,), -1, dtype=torch.long, device=dev),
            seq_lens=torch.ones(max_bs, dtype=torch.int32, device=dev),
            block_tables=torch.zeros(max_bs, self.max_blocks_per_seq, dtype=torch.int32, device=dev),
            hidden=torch.zeros(max_bs, self.model.config.hidden_size, dtype=self.dtype, device=dev),
        )
        v = self.graph_vars
        pool = None
        for bs in reversed(sizes):
            meta = _decode_meta(v["slot_mapping"][:bs], v["seq_lens"][:bs], v["block_tables"][:bs], dev)
            # Warm once outside the graph (allocator, lazy kernel compilation), then capture.
            v["hidden"][:bs] = self.model(v["input_ids"][:bs], v["positions"][:bs], meta)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool):
                v["hidden"][:bs] = self.model(v["input_ids"][:bs], v["positions"][:bs], meta)
            pool = graph.pool()
            self.graphs[bs] = graph
            torch.cuda.synchronize()
        log.info("captured CUDA graphs for decode batch sizes %s", sizes)

    def _replay(self, inputs: StepInputs) -> torch.Tensor:
        n = inputs.input_ids.shape[0]
        bs = next(b for b in sorted(self.graphs) if b >= n)
        v = self.graph_vars
        v["input_ids"][:n] = inputs.input_ids
        v["positions"][:n] = inputs.positions
        v["slot_mapping"].fill_(-1)
        v["slot_mapping"][:n] = inputs.meta.slot_mapping
        v["seq_lens"].fill_(1)
        v["seq_lens"][:n] = inputs.meta.decode_seq_lens
        tables = inputs.meta.decode_block_tables
        # Padding rows read block 0 (never -1, which the kernel would dereference); their output is dropped.
        v["block_tables"][:bs].zero_()
        v["block_tables"][:n, :tables.shape[1]] = tables.clamp(min=0)
        self.graphs[bs].replay()
        return v["hidden"][:n]


def _block_tables(tables: list[list[int]]) -> torch.Tensor:
    width = max(1, max(len(t) for t in tables))
    return torch.tensor([t + [-1] * (width - len(t)) for t in tables], dtype=torch.int32)


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def _decode_meta(slots, seq_lens, tables, device) -> AttentionMetadata:
    empty = torch.zeros(0, dtype=torch.int32, device=device)
    return AttentionMetadata(slot_mapping=slots, num_decodes=slots.shape[0], decode_seq_lens=seq_lens,
                             decode_block_tables=tables, prefill_cu_seqlens_q=torch.zeros(1, dtype=torch.int32,
                                                                                          device=device),
                             prefill_seq_lens=empty, prefill_block_tables=empty.view(0, 1))


def _empty_meta(device: torch.device, tokens: int) -> AttentionMetadata:
    """Metadata for the cache-less warm-up: one causal sequence of `tokens` tokens."""
    empty = torch.zeros(0, dtype=torch.int32, device=device)
    return AttentionMetadata(slot_mapping=torch.full((tokens,), -1, dtype=torch.long, device=device),
                             num_decodes=0, decode_seq_lens=empty, decode_block_tables=empty.view(0, 1),
                             prefill_cu_seqlens_q=torch.tensor([0, tokens], dtype=torch.int32, device=device),
                             prefill_seq_lens=torch.tensor([tokens], dtype=torch.int32, device=device),
                             prefill_block_tables=empty.view(0, 1))
