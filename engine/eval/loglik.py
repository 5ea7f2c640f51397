"""Log-likelihoods of continuations on our own engine, sharing every common prefix through its KV cache.

The engine's `prompt_logprobs` scores a whole prompt and, by design, bypasses the prefix cache (a cached token
has no logits). Multiple-choice scoring needs neither: only the few continuation tokens matter, and the
context (few-shot examples + question) is the same for every option and often for every item of a subject. So
this drives the engine's own scheduler, block manager and model runner directly:

- requests are grouped by context; one leader per group runs first, its followers (the other options) only
  after it, so their context comes out of the prefix cache and only their continuation is computed;
- the very first leader runs alone, so the few-shot prefix it shares with everything after it is cached too;
- logits are computed only at the positions that predict continuation tokens (not the whole prompt);
- the distribution at the context's last position, which a follower may find inside a cached block, is kept
  from the leader (it is identical: same tokens, same positions).

Tokenization follows lm-eval: trailing spaces of the context move to the continuation, the pair is encoded
whole and the context's own encoding marks where the continuation starts; contexts that are too long lose
their oldest tokens.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

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


def encode_pair(tokenizer, context: str, continuation: str, bos_id: int | None) -> tuple[list[int], list[int]]:
    """lm-eval's `_encode_pair`: (context ids, continuation ids)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False) if context else []
    cont = whole[len(ctx):]
    if not ctx:
        ctx = [bos_id if bos_id is not None else tokenizer.eos_token_id]
    return ctx, cont


class LoglikScorer:
    """Scores (context, continuation) pairs on an LLMEngine built over our own model runner."""

    def __init__(self, engine, lru_size: int = 64):
        if not getattr(engine.runner, "supports_prompt_logprobs", False):
            raise ValueError("mode: PPL scoring needs our own runner (an HF model folder); a GGUF is scored "
                             "through llama.cpp's backend")
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.last_rows: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.lru_size = lru_size
        self.stats = {"tokens": 0, "tokens_computed": 0}
        """Prompt tokens asked for and tokens actually run through the model (the rest came from the cache)."""

    def score(self, pairs: list[tuple[str, str]], progress: Progress = no_progress,
              cancel: threading.Event | None = None) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding would produce the continuation) per pair."""
        bos = self.tokenizer.bos_token_id
        limit = self.engine.max_model_len
        items = []
        for i, (context, continuation) in enumerate(pairs):
            ctx, cont = encode_pair(self.tokenizer, context, continuation, bos)
            if not cont:
                raise ValueError(f"continuation: {continuation!r} encodes to no tokens")
            ids = (ctx + cont)[-limit:]
            items.append(_Item(i, ids[: len(ids) - len(cont)], ids, len(ids) - len(cont)))
        groups: OrderedDict[tuple[int, ...], list[_Item]] = OrderedDict()
        for item in items:
            groups.setdefault(tuple(item.context), []).append(item)
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

        def submit(item: _Item) -> None:
            seq = Sequence(f"ll-{item.index}", 0, item.ids, params)
            seq_item[seq] = item
            scheduler.add(seq)

        # The first leader alone: whatever prefix it shares with the rest is cached before they start.
        key, members = queue.pop(0)
        submit(members[0])
        waiting_followers[key] = members[1:]
        primed = False
        while (scheduler.waiting or scheduler.running):
            check_cancel(cancel)
            batch = scheduler.schedule()
            if not batch:
                raise RuntimeError("scoring stalled: a request does not fit the KV cache (lower the context "
                                   "length or give the cache more memory)")
            finished = self._step(batch, seq_item)
            for seq in finished:
                item = seq_item.pop(seq)
                scheduler.finish(seq)
                done += 1
                key = tuple(item.context)
                for follower in waiting_followers.pop(key, []):
                    submit(follower)
            if finished and queue and not primed:  # the first leader is done: everything else may start
                primed = True
                for key, members in queue:
                    submit(members[0])
                    waiting_followers[key] = members[1:]
            if finished:
                progress(fraction=done / total, message=f"{done}/{total} continuations scored")

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
            key = tuple(item.context)
            first = item.cont_start - 1
            if start > first and first not in item.logprobs:  # predicted inside a cached block
                self._from_leader(item, key, first)
            for pos in range(max(start, first), min(end, len(item.ids) - 1)):
                rows.append(flat + pos - start)
                targets.append(item.ids[pos + 1])
                owners.append((item, pos, key))
            flat += n
        if rows:
            logprobs = runner.model.compute_logits(hidden, torch.tensor(rows, device=hidden.device)).float()
            logprobs = logprobs.log_softmax(-1)
            target_t = torch.tensor(targets, device=logprobs.device)
            chosen = logprobs.gather(1, target_t[:, None])[:, 0].tolist()
            greedy = (logprobs.argmax(-1) == target_t).tolist()
            for r, (item, pos, key) in enumerate(owners):
                item.logprobs[pos], item.greedy[pos] = chosen[r], greedy[r]
                if pos == item.cont_start - 1 and key not in self.last_rows:
                    self.last_rows[key] = logprobs[r].to("cpu", copy=True)
                    while len(self.last_rows) > self.lru_size:
                        self.last_rows.popitem(last=False)
        finished = []
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            self.stats["tokens_computed"] += n
            seq.num_computed_tokens += n
            self.engine.block_manager.cache_full_blocks(seq)
            if seq.num_computed_tokens == len(seq):
                finished.append(seq)
        return finished

    def _from_leader(self, item: _Item, key: tuple[int, ...], pos: int) -> None:
        row = self.last_rows.get(key)
        if row is None:
            raise RuntimeError("internal: a continuation's first position was cached but its leader's "
                               "distribution is gone; raise lru_size")
        target = item.ids[pos + 1]
        item.logprobs[pos] = float(row[target])
        item.greedy[pos] = bool(int(row.argmax()) == target)
