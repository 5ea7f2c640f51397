"""Paged attention: the three KV-cache ops in plain torch, and the layer that picks them or the Triton ones.

The torch ops are the CPU path and the reference the Triton kernels (engine/infer/kernels) are tested against;
both share one signature. Cache layout per layer:
[num_blocks, block_size, num_kv_heads, head_dim]; a token's slot is block_id * block_size + offset.

A step's batch is ordered decodes first. The layer runs the leading one-token sequences through the decode op
and the rest through the prefill op. On CPU, SDPA is always called with 4-D inputs: only those reach torch's
fused flash kernel (3-D ones fall back to the unfused math path, about 3x slower at a 512-token prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.infer import cpu_kernels

NOT_STORED = torch.empty(0, dtype=torch.long)
"""slot_mapping for cpu_kernels.paged_decode when the step's K/V are already in the cache."""


@dataclass
class AttentionMetadata:
    """Where a step's tokens go in the KV cache and what each query attends to; built once per step."""

    slot_mapping: torch.Tensor
    """[T] cache slot of each token, -1 to skip."""
    num_decodes: int
    """Leading sequences with exactly one query token (they go to the decode op)."""
    decode_seq_lens: torch.Tensor
    """[num_decodes] int32 context length of each decoding sequence, the new token included."""
    decode_block_tables: torch.Tensor
    """[num_decodes, max_blocks] int32, padded with -1."""
    prefill_cu_seqlens_q: torch.Tensor
    """[P+1] int32 query offsets of the prefill sequences, starting at 0 (relative to the first prefill token)."""
    prefill_seq_lens: torch.Tensor
    """[P] int32 context length of each prefill sequence, its new tokens included."""
    prefill_block_tables: torch.Tensor
    """[P, max_blocks] int32, padded with -1."""
    decode_gather: DecodeGather | None = None
    """The torch decode op's gather plan: built by the first layer that needs it, reused by the others."""
    static_decode: StaticDecodePlan | None = None
    """Set for a decode-only step run through a compiled CPU graph: its gather plan in fixed-shape buffers."""


def store_kvcache(key, value, k_cache, v_cache, slot_mapping) -> None:
    """Write key/value [N, Hkv, D] into the cache slots given by slot_mapping [N]; slot -1 is skipped."""
    keep = slot_mapping >= 0
    if not bool(keep.all()):
        key, value, slot_mapping = key[keep], value[keep], slot_mapping[keep]
    slots = slot_mapping.long()
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slots, key.to(k_cache.dtype))
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slots, value.to(v_cache.dtype))


def _gather(cache: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    num_blocks = (length + cache.shape[1] - 1) // cache.shape[1]
    return cache.index_select(0, block_table[:num_blocks].long()).flatten(0, 1)[:length]


def paged_attention_prefill(q, k_cache, v_cache, cu_seqlens_q, seq_lens, block_tables, scale) -> torch.Tensor:
    """Causal attention of varlen queries q [Tq, H, D] over their sequences' cached context -> [Tq, H, D]."""
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    for b, length in enumerate(seq_lens.tolist()):
        start, end = cu[b], cu[b + 1]
        q_len = end - start
        if q_len == 0:
            continue
        k = _gather(k_cache, block_tables[b], length).transpose(0, 1)[None]
        v = _gather(v_cache, block_tables[b], length).transpose(0, 1)[None]
        qb = q[start:end].transpose(0, 1)[None]
        if q_len == length:
            o = F.scaled_dot_product_attention(qb, k, v, is_causal=True, scale=scale, enable_gqa=True)
        else:
            # Query j sits at position length - q_len + j and sees cache positions up to it.
            pos_q = torch.arange(length - q_len, length, device=q.device)
            mask = torch.arange(length, device=q.device)[None, :] <= pos_q[:, None]
            o = F.scaled_dot_product_attention(qb, k, v, attn_mask=mask, scale=scale, enable_gqa=True)
        out[start:end] = o[0].transpose(0, 1)
    return out


@dataclass
class DecodeGather:
    """Which cache rows the torch decode op reads. It depends only on the step's batch, so one plan serves every
    layer (building it per layer was a dozen small ops each, 5-10% of a batch-1 step)."""

    rows: torch.Tensor
    """Rows of a layer's cache seen as [slots * Hkv, D], in [B, Hkv, length] order: one gather, no transpose."""
    padding: torch.Tensor
    """[B, 1, 1, length] bool, True where a position is past the sequence's end."""
    length: int
    """The longest context rounded up to whole blocks."""

    @staticmethod
    def build(seq_lens, block_tables, block_size: int, num_kv_heads: int) -> DecodeGather:
        dev = seq_lens.device
        num_blocks = (int(seq_lens.max()) + block_size - 1) // block_size
        length = num_blocks * block_size
        blocks = block_tables[:, :num_blocks].long()
        slots = (blocks[:, :, None] * block_size + torch.arange(block_size, device=dev)).flatten(1)
        valid = torch.arange(length, device=dev)[None, :] < seq_lens[:, None]
        slots = torch.where(valid, slots, slots[:, :1])
        rows = slots[:, None, :] * num_kv_heads + torch.arange(num_kv_heads, device=dev)[None, :, None]
        return DecodeGather(rows.flatten(), ~valid[:, None, None, :], length)


def paged_attention_decode(q, k_cache, v_cache, seq_lens, block_tables, scale,
                           plan: DecodeGather | None = None) -> torch.Tensor:
    """One query token per sequence, q [B, H, D], over its cached context -> [B, H, D].

    All sequences at once, padded to the longest: per-sequence calls cost more in per-op overhead than the
    padding costs in arithmetic at these sizes. The padded length is rounded up to whole blocks, so shapes
    change once a block rather than every step and oneDNN reuses its matmul plans (batch 1 lost 5% without).
    Padding positions read the sequence's own first slot (always written, so never NaN) and are masked out.
    Softmax always runs in fp32.

    In fp32 this is torch's fused SDPA. In bf16/fp16 that kernel is slow for one query token on CPU, and
    upcasting K/V for it cost a full copy of the context per layer; two batched matmuls with the softmax in
    fp32 between them (HF's eager attention: probabilities cast back to the model dtype) ran 1.8x faster.
    """
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    plan = plan or DecodeGather.build(seq_lens, block_tables, k_cache.shape[1], num_kv_heads)

    def gather(cache: torch.Tensor) -> torch.Tensor:
        """[B, Hkv, length, D], contiguous."""
        return cache.view(-1, head_dim).index_select(0, plan.rows).view(batch, num_kv_heads, plan.length, head_dim)

    if q.dtype == torch.float32:
        out = F.scaled_dot_product_attention(q[:, :, None], gather(k_cache), gather(v_cache),
                                             attn_mask=~plan.padding, scale=scale, enable_gqa=True)
        return out.view(batch, num_heads, head_dim)
    # Query head h reads kv head h // group, as HF's repeat_kv lays them out.
    group = num_heads // num_kv_heads
    scores = torch.matmul(q.view(batch, num_kv_heads, group, head_dim), gather(k_cache).transpose(-1, -2))
    scores = scores.float().mul_(scale).masked_fill_(plan.padding, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(q.dtype)
    return torch.matmul(probs, gather(v_cache)).view(batch, num_heads, head_dim)


@dataclass
class StaticDecodePlan:
    """A decode-only step's batch in buffers whose shapes depend only on the batch bucket, so one compiled graph
    serves every context length: the attention op reads each row's length from `seq_lens`."""

    seq_lens: torch.Tensor
    """[bucket] int32; 0 for a padding row (it attends to nothing and its output is dropped)."""
    block_tables: torch.Tensor
    """[bucket, max_blocks] int32; entries past a row's length are never read."""


@torch.library.custom_op("inkstone::cpu_paged_decode", mutates_args=("kv_cache",))
def cpu_paged_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_cache: torch.Tensor, layer: int,
                     slot_mapping: torch.Tensor, seq_lens: torch.Tensor, block_tables: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """The torch-ops stand-in for cpu_kernels.paged_decode (same signature) where the C++ kernels could not be
    built: store this step's K/V in layer `layer` of the runner's whole cache [2, layers, ...] and attend. Opaque
    to the compiler, so a compiled graph keeps fixed shapes while the context length changes every step; the
    whole cache is its one cache argument because two views of one buffer as separate arguments would make the
    compiler copy the buffer to keep them apart."""
    k_cache, v_cache = kv_cache[0, layer], kv_cache[1, layer]
    if slot_mapping.numel():
        store_kvcache(k, v, k_cache, v_cache, slot_mapping)
    # Padding rows (length 0) read their table's first slot, which is always a real block, and are dropped.
    lens = seq_lens.clamp(min=1)
    return paged_attention_decode(q, k_cache, v_cache, lens, block_tables.clamp(min=0), scale)


@cpu_paged_decode.register_fake
def _(q, k, v, kv_cache, layer, slot_mapping, seq_lens, block_tables, scale):
    return torch.empty_like(q)


def attention_without_cache(q, k, v, cu_seqlens_q: torch.Tensor, scale: float) -> torch.Tensor:
    """Plain causal prefill over fresh k/v, for the memory-profiling warm-up that runs before the cache exists."""
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    for start, end in zip(cu[:-1], cu[1:], strict=True):
        o = F.scaled_dot_product_attention(q[start:end].transpose(0, 1), k[start:end].transpose(0, 1),
                                           v[start:end].transpose(0, 1), is_causal=True, scale=scale,
                                           enable_gqa=True)
        out[start:end] = o.transpose(0, 1)
    return out


class Attention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        # Views into the runner's one big cache tensor, set once the cache is allocated.
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)
        # The whole cache and this layer's index in it, for the compiled CPU decode op.
        self.kv_cache = torch.empty(0)
        self.layer_index = 0
        self.native_cpu_decode = False
        """Decode through the C++ kernel (cpu_kernels); set with the cache, on the CPU where it could be built."""
        self.ops = (store_kvcache, paged_attention_prefill, paged_attention_decode)

    def use_triton_kernels(self) -> None:
        """Switch to the Triton ops (CUDA; on CPU tensors only under TRITON_INTERPRET=1, for tests)."""
        from engine.infer import kernels  # triton is needed (and importable) only here

        self.ops = (kernels.store_kvcache, kernels.paged_attention_prefill, kernels.paged_attention_decode)

    def forward(self, q, k, v, meta: AttentionMetadata) -> torch.Tensor:
        """q [T, H, D], k/v [T, Hkv, D] -> [T, H, D]."""
        if self.k_cache.numel() == 0:
            return attention_without_cache(q, k, v, meta.prefill_cu_seqlens_q, self.scale)
        plan = meta.static_decode
        if plan is not None:
            decode = cpu_kernels.paged_decode if self.native_cpu_decode else cpu_paged_decode
            return decode(q, k, v, self.kv_cache, self.layer_index, meta.slot_mapping, plan.seq_lens,
                          plan.block_tables, self.scale)
        store, prefill, _ = self.ops
        store(k, v, self.k_cache, self.v_cache, meta.slot_mapping)
        nd = meta.num_decodes
        if nd == q.shape[0]:
            return self._decode(q, meta)
        out = prefill(q[nd:], self.k_cache, self.v_cache, meta.prefill_cu_seqlens_q, meta.prefill_seq_lens,
                      meta.prefill_block_tables, self.scale)
        if nd == 0:
            return out
        return torch.cat([self._decode(q[:nd], meta), out])

    def _decode(self, q, meta: AttentionMetadata) -> torch.Tensor:
        decode = self.ops[2]
        args = (q, self.k_cache, self.v_cache, meta.decode_seq_lens, meta.decode_block_tables, self.scale)
        if decode is not paged_attention_decode:
            return decode(*args)
        if self.native_cpu_decode:  # K/V were stored above; the kernel's key/value arguments are not read
            return cpu_kernels.paged_decode(q, q, q, self.kv_cache, self.layer_index, NOT_STORED,
                                            meta.decode_seq_lens, meta.decode_block_tables, self.scale)
        if meta.decode_gather is None:
            meta.decode_gather = DecodeGather.build(meta.decode_seq_lens, meta.decode_block_tables,
                                                    self.k_cache.shape[1], self.num_kv_heads)
        return decode(*args, plan=meta.decode_gather)
