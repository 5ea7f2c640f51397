"""Block manager and scheduler on their own: allocation, ref counts, prefix hits, LRU eviction, preemption."""

from __future__ import annotations

from engine.infer.block_manager import BlockManager
from engine.infer.sampling_params import SamplingParams
from engine.infer.scheduler import Scheduler
from engine.infer.sequence import Sequence, SequenceStatus


def seq(tokens: list[int], rid: str = "r") -> Sequence:
    return Sequence(rid, 0, tokens, SamplingParams(max_tokens=100))


def run_step(scheduler: Scheduler, next_token: int = 7):
    """What the engine does after a step: mark tokens computed, cache full blocks, append a sampled token."""
    batch = scheduler.schedule()
    for s, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
        s.num_computed_tokens += n
        scheduler.block_manager.cache_full_blocks(s)
        if s.num_computed_tokens == len(s):
            s.token_ids.append(next_token)
    return batch


def test_allocation_and_free_return_every_block():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(list(range(10)))
    assert bm.can_append(a, 10)
    bm.append(a, 10)
    assert len(a.block_table) == 3 and bm.num_free_blocks == 5
    a.num_computed_tokens = 10
    bm.append(a, 2)  # 12 tokens still fit in 3 blocks
    assert len(a.block_table) == 3
    bm.append(a, 3)
    assert len(a.block_table) == 4
    bm.free_seq(a)
    assert bm.num_free_blocks == 8 and a.block_table == []


def test_prefix_hit_shares_blocks_with_ref_counts():
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq(list(range(10)))
    bm.append(a, 10)
    a.num_computed_tokens = 10
    bm.cache_full_blocks(a)
    b = seq(list(range(8)) + [99, 98, 97])
    hits = bm.match_prefix(b)
    assert hits == a.block_table[:2]
    bm.allocate_prefix(b, hits)
    assert b.num_cached_tokens == 8 and b.num_computed_tokens == 8
    assert [bm.blocks[i].ref_count for i in hits] == [2, 2]
    bm.free_seq(a)
    assert [bm.blocks[i].ref_count for i in hits] == [1, 1]
    assert hits[0] not in bm.free


def test_whole_prompt_cached_still_leaves_the_last_token_to_compute():
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq(list(range(8)))
    bm.append(a, 8)
    a.num_computed_tokens = 8
    bm.cache_full_blocks(a)
    bm.free_seq(a)
    again = seq(list(range(8)))
    # Both blocks are cached, but only the first may be used: the 8th token must run to give logits.
    assert len(bm.match_prefix(again)) == 1


def test_freed_cached_blocks_are_revived_or_evicted_oldest_first():
    bm = BlockManager(num_blocks=4, block_size=2)
    a, b = seq([1, 2, 3, 4, 5]), seq([9, 8, 7, 6, 5])
    for s in (a, b):
        bm.append(s, 4)
        s.num_computed_tokens = 4
        bm.cache_full_blocks(s)
    bm.free_seq(a)
    bm.free_seq(b)
    assert bm.num_free_blocks == 4
    # a's blocks were freed first, so a fresh allocation evicts them and b's prefix survives.
    c = seq([42, 43, 44])
    bm.append(c, 3)
    assert bm.match_prefix(seq([1, 2, 3, 4, 5])) == []
    assert len(bm.match_prefix(seq([9, 8, 7, 6, 5]))) == 2
    # Reviving b's cached blocks takes them out of the free list.
    d = seq([9, 8, 7, 6, 5])
    bm.allocate_prefix(d, bm.match_prefix(d))
    assert bm.num_free_blocks == 0


def test_decodes_come_first_then_prefill_chunks_under_the_token_budget():
    bm = BlockManager(num_blocks=64, block_size=4)
    sched = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=10)
    short = seq([1, 2, 3], "short")
    sched.add(short)
    run_step(sched)  # short prefilled, now decoding
    long = seq(list(range(100, 125)), "long")
    sched.add(long)
    batch = run_step(sched)
    assert batch.seqs == [short, long] and batch.num_new_tokens == [1, 9]
    batch = run_step(sched)
    assert batch.seqs == [short, long] and batch.num_new_tokens == [1, 9]
    assert long.num_computed_tokens == 18


def test_max_num_seqs_limits_running():
    bm = BlockManager(num_blocks=64, block_size=4)
    sched = Scheduler(bm, max_num_seqs=2, max_num_batched_tokens=100)
    seqs = [seq([i, i + 1], str(i)) for i in range(3)]
    for s in seqs:
        sched.add(s)
    batch = run_step(sched)
    assert batch.seqs == seqs[:2] and list(sched.waiting) == [seqs[2]]


def test_preemption_takes_the_newest_and_the_oldest_finishes_first():
    bm = BlockManager(num_blocks=4, block_size=2)
    sched = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=100)
    old, new = seq([1, 2, 3, 4], "old"), seq([5, 6, 7, 8], "new")
    sched.add(old)
    sched.add(new)
    run_step(sched)
    assert sched.running == [old, new] and bm.num_free_blocks == 0
    # Both need a third block for their next token; the newest is preempted and goes back to waiting first.
    run_step(sched)
    assert sched.running == [old] and list(sched.waiting) == [new]
    assert new.status == SequenceStatus.WAITING and new.block_table == [] and new.num_computed_tokens == 0
    assert len(new) == 5  # its sampled token is kept and recomputed later
    assert sched.num_preemptions == 1


def test_nothing_starves_fifo_admission_does_not_skip_a_big_head():
    bm = BlockManager(num_blocks=6, block_size=2)
    sched = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=100)
    running = seq([1, 2, 3, 4, 5, 6, 7], "first")
    big, small = seq(list(range(10, 19)), "big"), seq([50], "small")
    sched.add(running)
    run_step(sched)
    sched.add(big)
    sched.add(small)
    batch = run_step(sched)
    # big does not fit next to `first`; small would, but must not jump the queue.
    assert batch.seqs == [running] and list(sched.waiting) == [big, small]
    sched.finish(running)
    batch = run_step(sched)
    assert batch.seqs == [big, small]


def test_finish_frees_blocks_wherever_the_sequence_is():
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    sched = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=4)
    a, b = seq(list(range(9)), "a"), seq([1, 2], "b")
    sched.add(a)
    sched.add(b)
    run_step(sched)  # a is mid-prefill, b still waiting
    assert a.num_computed_tokens == 4 and list(sched.waiting) == [b]
    sched.finish(a)
    sched.finish(b)
    assert bm.num_free_blocks == 8 and not sched.waiting and not sched.running
    assert a.status == b.status == SequenceStatus.FINISHED
