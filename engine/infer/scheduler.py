"""Decides, each step, which sequences run and how many of their tokens: continuous batching.

Every sequence is "tokens known" vs "tokens whose KV is computed"; a step computes some of the difference.
Decode (one token left) and prefill (many left) are the same thing at different sizes, which is what lets a
step mix decodes with prefill chunks under one token budget. Order of service: running decodes first (so a
long prompt never stalls streaming), then running prefill chunks, then new sequences in arrival order (FIFO,
and never skipping a head that does not fit, so nothing starves). When blocks run out, the newest running
sequence is preempted and later recomputed from scratch (prompt and output so far; its prefix blocks are
likely still cached).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from engine.infer.block_manager import BlockManager
from engine.infer.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    seqs: list[Sequence] = field(default_factory=list)
    """Sequences of this step, decodes first."""
    num_new_tokens: list[int] = field(default_factory=list)
    """How many tokens of each sequence this step computes."""

    def __len__(self) -> int:
        return len(self.seqs)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        # Arrival order, oldest first: preemption takes from the end.
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> ScheduledBatch:
        budget = self.max_num_batched_tokens
        chosen: dict[Sequence, int] = {}
        preempted_any = False
        decodes = [s for s in self.running if len(s) - s.num_computed_tokens == 1]
        prefills = [s for s in self.running if len(s) - s.num_computed_tokens > 1]
        for seq in decodes + prefills:
            if seq.status != SequenceStatus.RUNNING or budget == 0:
                continue
            n = min(len(seq) - seq.num_computed_tokens, budget)
            while not self.block_manager.can_append(seq, n):
                victim = self.running[-1]
                budget += chosen.pop(victim, 0)
                self._preempt(victim)
                preempted_any = True
                if victim is seq:
                    break
            if seq.status == SequenceStatus.RUNNING:
                self.block_manager.append(seq, n)
                chosen[seq] = n
                budget -= n
        # Admitting new work right after a preemption would only thrash the cache.
        while self.waiting and not preempted_any and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            prefix = self.block_manager.match_prefix(seq)
            cached = len(prefix) * self.block_manager.block_size
            n = min(len(seq) - cached, budget)
            revived = sum(1 for b in prefix if self.block_manager.blocks[b].ref_count == 0)
            fresh = self.block_manager.blocks_needed(cached + n) - len(prefix)
            if fresh + revived > self.block_manager.num_free_blocks:
                break
            self.waiting.popleft()
            self.block_manager.allocate_prefix(seq, prefix)
            self.block_manager.append(seq, n)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            chosen[seq] = n
            budget -= n
        return ScheduledBatch(list(chosen), list(chosen.values()))

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free_seq(seq)
        seq.reset_for_recompute()
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def finish(self, seq: Sequence) -> None:
        """Take a finished or aborted sequence out of the queues and give back its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.free_seq(seq)
        seq.status = SequenceStatus.FINISHED
