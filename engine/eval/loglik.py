"""Log-likelihoods of continuations on our own engine, sharing every common prefix through its KV cache.

The engine's `prompt_logprobs` scores a whole prompt and, by design, bypasses the prefix cache (a cached token
has no logits). Multiple-choice scoring needs neither: only the few continuation tokens matter, and the
context (few-shot examples + question) is the same for every option and often for every item of a subject. So
this drives the engine's own scheduler, block manager and model runner directly:

- requests are grouped by context; one leader per group runs first, its followers (the other options) only
  after it, so their context comes out of the prefix cache and only their continuation is computed;
- the very first leader runs alone, so the few-shot prefix it shares with everything after it is cached too;
- logits are computed only at the positions that predict continuation tokens (not the whole prompt);
- the distribution at the context's last position is the same for every member of a group (same tokens, same
  positions), so a follower whose continuation is a single token (MMLU's " A" ... " D") is answered from the
  leader's and never runs at all: a question is one sequence instead of four;
- a cached block has KV but no logits, so the blocks that reach the context's last position or beyond are
  never taken from the prefix cache (options sharing their first tokens, or a pair scored twice, would
  otherwise leave positions unscored); everything before is shared.

Tokenization follows lm-eval: trailing spaces of the context move to the continuation, the pair is encoded
whole and the context's own encoding marks where the continuation starts; contexts that are too long lose
their oldest tokens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from engine.infer.block_manager import chain_hash
from engine.infer.sampling_params import SamplingParams
from engine.infer.sequence import Sequence
from engine.progress import Progress, check_cancel, no_progress


@dataclass
class _Item:
    index: int
    context: list[int]
    ids: list[int]
    cont_start: int
    logprobs: dict[int, float] = field(default_factory=dict)
    greedy: dict[int, bool] = field(default_factory=dict)
    key: tuple[int, ...] = ()
    """The context as a tuple: the group's key."""
    uncacheable: list[int] = field(default_factory=list)
    """Chain hashes of the full blocks this sequence must compute itself (see _blocks_to_compute)."""


def encode_pair(tokenizer, context: str, continuation: str, bos_id: int | None,
                memo: dict[str, list[int]] | None = None) -> tuple[list[int], list[int]]:
    """lm-eval's `_encode_pair`: (context ids, continuation ids). memo keeps contexts already encoded."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    if memo is not None and context in memo:
        ctx = memo[context]
    else:
        ctx = tokenizer.encode(context, add_special_tokens=False) if context else []
        if memo is not None:
            memo[context] = ctx
    cont = whole[len(ctx):]
    if not ctx:
        ctx = [bos_id if bos_id is not None else tokenizer.eos_token_id]
    return ctx, cont


class LoglikScorer:
    """Scores (context, continuation) pairs on an LLMEngine built over our own model runner."""

    def __init__(self, engine, shortcut: bool = True):
        if not getattr(engine.runner, "supports_prompt_logprobs", False):
            raise ValueError("mode: PPL scoring needs our own runner (an HF model folder); a GGUF is scored "
                             "through llama.cpp's backend")
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.shortcut = shortcut
        """Answer single-token followers from their leader's distribution instead of running them (off only to
        compare against)."""
        self.stats = {"tokens": 0, "tokens_computed": 0, "sequences": 0}
        """Prompt tokens asked for, tokens actually run through the model (the rest came from the cache or were
        never needed), and sequences run."""
        self._riders: dict[tuple[int, ...], list[_Item]] = {}
        self._answered = 0

    def score(self, pairs: list[tuple[str, str]], progress: Progress = no_progress,
              cancel: threading.Event | None = None) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding would produce the continuation) per pair."""
        bos = self.tokenizer.bos_token_id
        limit = self.engine.max_model_len
        items = []
        encoded: dict[str, list[int]] = {}
        for i, (context, continuation) in enumerate(pairs):
            ctx, cont = encode_pair(self.tokenizer, context, continuation, bos, encoded)
            if not cont:
                raise ValueError(f"continuation: {continuation!r} encodes to no tokens")
            ids = (ctx + cont)[-limit:]
            items.append(_Item(i, ids[: len(ids) - len(cont)], ids, len(ids) - len(cont)))
        groups: OrderedDict[tuple[int, ...], list[_Item]] = OrderedDict()
        for item in items:
            item.key = tuple(item.context)
            groups.setdefault(item.key, []).append(item)
        self.stats["tokens"] += sum(len(it.ids) for it in items)
        self._run(groups, progress, cancel)
        return [(sum(it.logprobs.values()), all(it.greedy.values())) for it in items]

    def _run(self, groups, progress: Progress, cancel) -> None:
        engine = self.engine
        scheduler = engine.scheduler
        if (scheduler.waiting or scheduler.running):
            raise RuntimeError("the engine is busy; score on an engine of your own")
        params = SamplingParams(temperature=0, max_tokens=1)
        seq_item: dict[Sequence, _Item] = {}
        waiting_followers: dict[tuple[int, ...], list[_Item]] = {}
        queue = list(groups.items())
        total, done = sum(len(v) for v in groups.values()), 0
        self._riders, self._answered = {}, 0

        def submit(item: _Item) -> None:
            seq = Sequence(f"ll-{item.index}", 0, item.ids, params)
            item.uncacheable = self._blocks_to_compute(item.ids, item.cont_start - 1)
            seq_item[seq] = item
            scheduler.add(seq)
            self.stats["sequences"] += 1

        def start(key: tuple[int, ...], members: list[_Item]) -> None:
            followers = members[1:]
            if self.shortcut:  # one-token followers need only the leader's last context position
                riders = [m for m in followers if len(m.ids) - m.cont_start == 1]
                followers = [m for m in followers if len(m.ids) - m.cont_start > 1]
                if riders:
                    self._riders[key] = riders
            submit(members[0])
            waiting_followers[key] = followers

        try:
            # The first leader alone, so whatever prefix it shares with the rest is cached before they start
            # (unless that prefix is cached already: then a step of its own would only cost time).
            start(*queue.pop(0))
            primed = not (queue and self._worth_priming(next(iter(groups)), queue[0][0]))
            if primed:
                for key, members in queue:
                    start(key, members)
            while (scheduler.waiting or scheduler.running):
                check_cancel(cancel)
                self._hide_blocks_past_context(scheduler.waiting, seq_item)
                batch = scheduler.schedule()
                if not batch:
                    raise RuntimeError("scoring stalled: a request does not fit the KV cache (lower the context "
                                       "length or give the cache more memory)")
                finished = self._step(batch, seq_item)
                for seq in finished:
                    item = seq_item.pop(seq)
                    scheduler.finish(seq)
                    done += 1
                    for follower in waiting_followers.pop(item.key, []):
                        submit(follower)
                if finished and queue and not primed:  # the first leader is done: everything else may start
                    primed = True
                    for key, members in queue:
                        start(key, members)
                if finished:
                    progress(fraction=(done + self._answered) / total,
                             message=f"{done + self._answered}/{total} continuations scored")
        finally:  # cancelled or failed: leave the engine empty for the next call
            for seq in list(seq_item):
                scheduler.finish(seq)
            self._riders = {}

    def _blocks_to_compute(self, ids: list[int], first: int) -> list[int]:
        """Chain hashes of ids' full blocks that reach position `first` (the context's last) or beyond.

        Their tokens' logits are needed, and a cached block has KV but no logits, so they must not come from
        the prefix cache (another option sharing the first continuation tokens, or the same pair scored before,
        would otherwise leave positions unscored).
        """
        bs = self.engine.block_manager.block_size
        keep = first // bs  # blocks wholly before `first`: free to share
        hashes, parent = [], None
        for i in range((len(ids) - 1) // bs):  # the blocks match_prefix may hand out
            parent = chain_hash(parent, ids[i * bs:(i + 1) * bs])
            if i >= keep:
                hashes.append(parent)
        return hashes

    def _hide_blocks_past_context(self, waiting, seq_item: dict[Sequence, _Item]) -> None:
        """Unname the cached blocks that waiting sequences must compute themselves, just before they are matched.

        The blocks stay as they are for whoever holds them; only a later match cannot find them, and the
        sequence that computes them anew names its own copy.
        """
        named = self.engine.block_manager.hash_to_block
        for seq in waiting:
            for h in seq_item[seq].uncacheable:
                named.pop(h, None)

    def _worth_priming(self, first: tuple[int, ...], second: tuple[int, ...]) -> bool:
        """Whether the first two contexts share full blocks that the prefix cache does not hold yet."""
        shared = 0
        for a, b in zip(first, second, strict=False):
            if a != b:
                break
            shared += 1
        blocks = self.engine.block_manager
        if shared < blocks.block_size:
            return False
        probe = Sequence("ll-probe", 0, list(first[:shared]) + [0], SamplingParams(temperature=0, max_tokens=1))
        return len(blocks.match_prefix(probe)) < shared // blocks.block_size

    @torch.inference_mode()
    def _step(self, batch, seq_item: dict[Sequence, _Item]) -> list[Sequence]:
        runner = self.engine.runner
        inputs = runner.prepare(batch)
        hidden = runner._forward(inputs)
        rows, targets, owners = [], [], []
        flat = 0
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            item = seq_item[seq]
            start, end = seq.num_computed_tokens, seq.num_computed_tokens + n
            first = item.cont_start - 1
            if start > first:
                raise RuntimeError(f"internal: position {first} came from the prefix cache, without logits")
            for pos in range(max(start, first), min(end, len(item.ids) - 1)):
                rows.append(flat + pos - start)
                targets.append(item.ids[pos + 1])
                owners.append((item, pos))
            flat += n
        if rows:
            logprobs = runner.model.compute_logits(hidden, torch.tensor(rows, device=hidden.device)).float()
            logprobs = logprobs.log_softmax(-1)
            target_t = torch.tensor(targets, device=logprobs.device)
            chosen = logprobs.gather(1, target_t[:, None])[:, 0].tolist()
            best = logprobs.argmax(-1)
            greedy = (best == target_t).tolist()
            for r, (item, pos) in enumerate(owners):
                item.logprobs[pos], item.greedy[pos] = chosen[r], greedy[r]
                if pos == item.cont_start - 1 and item.key in self._riders:
                    self._answer_riders(item.key, logprobs[r], int(best[r]))
        finished = []
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            self.stats["tokens_computed"] += n
            seq.num_computed_tokens += n
            self.engine.block_manager.cache_full_blocks(seq)
            if seq.num_computed_tokens == len(seq):
                finished.append(seq)
        return finished

    def _answer_riders(self, key: tuple[int, ...], row: torch.Tensor, best: int) -> None:
        """The one-token followers of a group, from the distribution at the context's last position."""
        riders = self._riders.pop(key)
        picked = row[torch.tensor([m.ids[-1] for m in riders], device=row.device)].tolist()
        for member, logprob in zip(riders, picked, strict=True):
            pos = member.cont_start - 1
            member.logprobs[pos], member.greedy[pos] = logprob, member.ids[-1] == best
        self._answered += len(riders)
