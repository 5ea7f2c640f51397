"""Turns a step's last-position logits into tokens, all sequences at once in batched torch ops.

Order per row, as in HF: penalties (repetition over prompt + output, frequency/presence over output), then
temperature, top-k, top-p, min-p, then a draw. Greedy rows (temperature 0) take the argmax after penalties.
Reported logprobs are of the model's raw distribution (before penalties and temperature), as in vLLM; for a
row under a grammar constraint they are of the masked distribution (tokens the grammar forbids at -inf, the
rest renormalised), so they describe the choice the constraint actually allowed.
A grammar mask (structured_grammar.TokenMask) is handed over by the engine before the runner calls the sampler
(`next_mask`), so the model runner needs no knowledge of constraints.
The two passes every step makes over the whole vocabulary (are the logits finite, which is the largest) run as
our CPU kernels where they are built: ATen's generic reductions cost 2-3% of a batch-1 decode step there.
Draws use the exponential-race trick (argmax of p / Exp(1) noise is a sample of p): one batched op, and a
seeded row only needs its own noise drawn from its own generator, which makes it independent of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.infer import cpu_kernels
from engine.infer.outputs import TokenLogprob
from engine.infer.sampling_params import SamplingParams

if TYPE_CHECKING:
    from engine.infer.structured_grammar import TokenMask


@dataclass
class SamplerOutput:
    token_ids: list[int]
    """The chosen token of each row (meaningless for a row with an error)."""
    logprobs: list[TokenLogprob | None]
    """Per row, when that row asked for logprobs."""
    errors: list[str | None]
    """Per row, why it could not be sampled (non-finite logits)."""


NEG_INF = float("-inf")


def _native(logits: torch.Tensor) -> bool:
    return logits.device.type == "cpu" and logits.is_contiguous() and cpu_kernels.available()


def rows_finite(logits: torch.Tensor) -> torch.Tensor:
    """[B] bool: rows of fp32 logits [B, V] without inf or NaN."""
    if _native(logits):
        return cpu_kernels.rows_finite(logits)
    return torch.isfinite(logits).all(-1)


def rows_argmax(logits: torch.Tensor) -> torch.Tensor:
    """[B] int64: the first index of each row's largest value (rows are finite or -inf)."""
    if _native(logits):
        return cpu_kernels.rows_argmax(logits)
    return logits.argmax(-1)


def _padded(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def apply_penalties(logits: torch.Tensor, params: list[SamplingParams], token_ids: list[list[int]],
                    num_prompt: list[int]) -> torch.Tensor:
    """Penalised copy of logits [B, V]; token_ids are each row's prompt + output tokens."""
    rows = [i for i, p in enumerate(params)
            if p.repetition_penalty != 1 or p.frequency_penalty != 0 or p.presence_penalty != 0]
    if not rows:
        return logits
    logits = logits.clone()
    vocab = logits.shape[1]
    device = logits.device
    index = torch.tensor(rows, device=device)
    sub = logits.index_select(0, index)
    # A padding column (index vocab) absorbs the padding, then is dropped.
    seen = torch.zeros(len(rows), vocab + 1, dtype=torch.bool, device=device)
    seen.scatter_(1, _padded([token_ids[i] for i in rows], vocab).to(device), True)
    rep = torch.tensor([params[i].repetition_penalty for i in rows], device=device)[:, None]
    penalised = torch.where(sub > 0, sub / rep, sub * rep)
    sub = torch.where(seen[:, :vocab], penalised, sub)
    counts = torch.zeros(len(rows), vocab + 1, device=device)
    outputs = _padded([token_ids[i][num_prompt[i]:] for i in rows], vocab).to(device)
    counts.scatter_add_(1, outputs, torch.ones_like(outputs, dtype=counts.dtype))
    counts = counts[:, :vocab]
    freq = torch.tensor([params[i].frequency_penalty for i in rows], device=device)[:, None]
    pres = torch.tensor([params[i].presence_penalty for i in rows], device=device)[:, None]
    sub = sub - freq * counts - pres * (counts > 0).to(sub.dtype)
    logits.index_copy_(0, index, sub)
    return logits


def _warp(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Temperature, top-k, top-p, min-p -> probabilities [B, V]."""
    device = logits.device
    temps = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params], device=device)
    logits = logits / temps[:, None]
    vocab = logits.shape[1]
    if any(p.top_p < 1 or p.top_k > 0 for p in params):
        ascending, order = logits.sort(dim=-1)
        ks = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params], device=device)
        drop = torch.arange(vocab, device=device)[None, :] < (vocab - ks)[:, None]
        ascending = ascending.masked_fill(drop, float("-inf"))
        top_p = torch.tensor([p.top_p for p in params], device=device)[:, None]
        cumulative = ascending.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - top_p
        drop[:, -1] = False
        ascending = ascending.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, ascending)
    probs = logits.softmax(-1)
    if any(p.min_p > 0 for p in params):
        min_p = torch.tensor([p.min_p for p in params], device=device)[:, None]
        probs = probs.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def top_logprobs(logprobs: torch.Tensor, chosen: torch.Tensor, ks: list[int]) -> list[TokenLogprob]:
    """TokenLogprob per row of log-probabilities [N, V], for the chosen tokens [N] and top-k per row."""
    k_max = max(ks)
    chosen_lp = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
    if k_max > 0:
        values, indices = logprobs.topk(k_max, dim=-1)
        values, indices = values.tolist(), indices.tolist()
    result = []
    for row, (token, lp, k) in enumerate(zip(chosen.tolist(), chosen_lp, ks, strict=True)):
        # A masked row has fewer than k possible tokens: its -inf entries are not alternatives.
        top = [(t, v) for t, v in zip(indices[row][:k], values[row][:k], strict=True) if v != NEG_INF] if k else []
        result.append(TokenLogprob(token, lp, top))
    return result


class Sampler:
    next_mask: TokenMask | None = None
    """The grammar mask for the next call only (set by the engine, consumed by the call)."""

    def __call__(self, logits: torch.Tensor, params: list[SamplingParams], token_ids: list[list[int]],
                 num_prompt: list[int], generators: list[torch.Generator | None]) -> SamplerOutput:
        logits = logits.float()
        finite = rows_finite(logits)
        errors: list[str | None] = [None] * len(params)
        if not bool(finite.all()):
            for i in (~finite).nonzero().flatten().tolist():
                errors[i] = "non-finite logits"
            logits = torch.where(finite[:, None], logits, torch.zeros_like(logits))
        mask, self.next_mask = self.next_mask, None
        if mask is not None:
            if logits.shape[0] != mask.bitmask.shape[0]:
                raise RuntimeError(f"grammar mask for {mask.bitmask.shape[0]} rows, sampler called with "
                                   f"{logits.shape[0]}")
            mask.apply(logits)
        raw = logits
        logits = apply_penalties(logits, params, token_ids, num_prompt)
        tokens = rows_argmax(logits)
        if not all(p.greedy for p in params):
            probs = _warp(logits, params)
            noise = torch.empty_like(probs).exponential_()
            for i, gen in enumerate(generators):
                if gen is not None:
                    noise[i] = torch.empty(probs.shape[1]).exponential_(generator=gen).to(noise.device)
            sampled = rows_argmax(probs / noise)
            greedy = torch.tensor([p.greedy for p in params], device=logits.device)
            tokens = torch.where(greedy, tokens, sampled)
        logprobs: list[TokenLogprob | None] = [None] * len(params)
        wanted = [i for i, p in enumerate(params) if p.logprobs is not None]
        if wanted:
            index = torch.tensor(wanted, device=logits.device)
            rows = raw.index_select(0, index).log_softmax(-1)
            entries = top_logprobs(rows, tokens.index_select(0, index), [params[i].logprobs for i in wanted])
            for i, entry in zip(wanted, entries, strict=True):
                logprobs[i] = entry
        return SamplerOutput(tokens.tolist(), logprobs, errors)
