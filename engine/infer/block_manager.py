"""Hands out KV cache blocks and shares full blocks between sequences with the same token prefix.

Prefix caching: a full block is named by a chain hash (its parent block's hash and its own token ids), so a
block's name stands for the whole prefix up to its end. Blocks carry ref counts; a block whose count drops to 0
keeps its hash and waits in the free list, oldest-freed first, until it is either hit again (revived) or
evicted to serve a fresh allocation (LRU reuse).
"""

from __future__ import annotations

from collections import OrderedDict

from engine.infer.sequence import Sequence


def chain_hash(parent: int | None, token_ids: list[int]) -> int:
    return hash((parent, tuple(token_ids)))


class Block:
    __slots__ = ("block_id", "ref_count", "hash", "token_ids")

    def __init__(self, block_id: int):
        self.block_id = block_id
        self.ref_count = 0
        self.hash: int | None = None
        self.token_ids: list[int] = []


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1:
            raise ValueError(f"num_kv_blocks: need at least 1 KV block, got {num_blocks}")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Insertion order is eviction order: the block freed longest ago goes first.
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def num_used_blocks(self) -> int:
        return len(self.blocks) - len(self.free)

    def blocks_needed(self, num_tokens: int) -> int:
        return (num_tokens + self.block_size - 1) // self.block_size

    def match_prefix(self, seq: Sequence) -> list[int]:
        """Block ids holding the longest cached prefix of seq, leaving at least its last token to compute."""
        if not self.enable_prefix_caching or seq.wants_prompt_logprobs:
            return []
        bs = self.block_size
        hits: list[int] = []
        parent = None
        for i in range((len(seq) - 1) // bs):
            tokens = seq.token_ids[i * bs:(i + 1) * bs]
            h = chain_hash(parent, tokens)
            block_id = self.hash_to_block.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(block_id)
            parent = h
        return hits

    def allocate_prefix(self, seq: Sequence, block_ids: list[int]) -> None:
        """Give a newly scheduled sequence the cached blocks match_prefix found."""
        for block_id in block_ids:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
            seq.block_hashes.append(block.hash)
        seq.num_computed_tokens = len(block_ids) * self.block_size
        if seq.num_preemptions == 0:
            # Report what the cache saved the request, not what a recompute after preemption reused.
            seq.num_cached_tokens = seq.num_computed_tokens

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        need = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        return need <= len(self.free)

    def append(self, seq: Sequence, num_new_tokens: int) -> None:
        """Make seq's blocks cover its next num_new_tokens tokens (call can_append first)."""
        need = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        for _ in range(need):
            seq.block_table.append(self._take_free_block())

    def _take_free_block(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None and self.hash_to_block.get(block.hash) == block_id:
            del self.hash_to_block[block.hash]
        block.hash = None
        block.token_ids = []
        block.ref_count = 1
        return block_id

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Name the blocks that became full and computed in the last step, so later requests can hit them."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        num_full = min(seq.num_computed_tokens, len(seq)) // bs
        for i in range(len(seq.block_hashes), num_full):
            parent = seq.block_hashes[-1] if seq.block_hashes else None
            tokens = seq.token_ids[i * bs:(i + 1) * bs]
            h = chain_hash(parent, tokens)
            seq.block_hashes.append(h)
            block = self.blocks[seq.block_table[i]]
            # If an identical block is already registered (computed concurrently), keep the first one.
            if h not in self.hash_to_block:
                self.hash_to_block[h] = block.block_id
                block.hash = h
                block.token_ids = tokens

    def free_seq(self, seq: Sequence) -> None:
        """Drop seq's references; tail blocks go to the free list first so they are evicted before prefixes."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0
