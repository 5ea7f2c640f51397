"""Log-likelihoods of continuations computed by llama.cpp, so a GGUF is scored in PPL mode like an HF folder.

An exported quant is judged by the same multiple-choice scores as the model it came from; that needs
llama.cpp's own logits, not a dequantized copy in torch. llama-cpp-python's context holds one sequence, so
pairs are scored one after another, and the KV cache does the sharing:

- pairs are grouped by context; the context is evaluated once, with logits at its last position only (that
  row predicts every option's first token);
- each option then only costs its own tokens: the KV is cut back to the context's length and the option's
  tokens (all but the last, which predicts nothing we need) are evaluated with logits at every position;
- whatever the next context shares with the tokens the context already holds (the few-shot prefix, the same
  passage) is kept too, so consecutive questions of a subject compute only what differs.

Tokenization is `encode_pair`'s (lm-eval's), with the tokenizer rebuilt from the GGUF's own vocabulary; too
long inputs lose their oldest context tokens, as on our own engine. The Llama object's record of the tokens it
holds is kept in step, so generation on the same context afterwards reuses the prefix as usual.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from engine.eval.loglik import encode_pair
from engine.progress import Progress, check_cancel, no_progress


def _common_prefix(held: np.ndarray, tokens: list[int]) -> int:
    n = min(len(held), len(tokens))
    mismatch = np.flatnonzero(held[:n] != np.asarray(tokens[:n], dtype=held.dtype))
    return int(mismatch[0]) if mismatch.size else n


def _logprob_and_greedy(row: np.ndarray, target: int) -> tuple[float, bool]:
    """log softmax(row)[target] in float64, and whether target is the row's argmax."""
    x = row.astype(np.float64)
    peak = x.max()
    log_norm = peak + np.log(np.exp(x - peak).sum())
    return float(x[target] - log_norm), bool(int(x.argmax()) == target)


class GgufLoglikScorer:
    """Scores (context, continuation) pairs on a llama-cpp-python `Llama`, sharing contexts through its KV."""

    def __init__(self, llm, tokenizer):
        self.llm = llm
        self.tokenizer = tokenizer
        self.n_vocab = llm.n_vocab()
        self.stats = {"tokens": 0, "tokens_computed": 0}
        """Tokens of the pairs (context + continuation) and tokens actually run through llama.cpp."""

    def score(self, pairs: list[tuple[str, str]], progress: Progress = no_progress,
              cancel: threading.Event | None = None) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding would produce the continuation) per pair."""
        import llama_cpp

        limit = self.llm.n_ctx()
        groups: OrderedDict[tuple[int, ...], list[tuple[int, list[int]]]] = OrderedDict()
        for i, (context, continuation) in enumerate(pairs):
            ctx, cont = encode_pair(self.tokenizer, context, continuation, self.tokenizer.bos_token_id)
            if not cont:
                raise ValueError(f"continuation: {continuation!r} encodes to no tokens")
            if len(cont) >= limit:
                raise ValueError(f"continuation: {len(cont)} tokens do not fit the context of {limit} tokens")
            ids = (ctx + cont)[-limit:]  # the oldest context tokens go first, as on our own engine
            groups.setdefault(tuple(ids[: len(ids) - len(cont)]), []).append((i, cont))
            self.stats["tokens"] += len(ids)
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        batch = llama_cpp.llama_batch_init(self.llm.n_batch, 0, 1)
        try:
            done = 0
            for context, members in groups.items():
                check_cancel(cancel)
                context = list(context)
                (last,) = self._extend(batch, context, len(context) - 1)
                for index, cont in members:
                    lp, greedy = _logprob_and_greedy(last, cont[0])
                    if len(cont) > 1:  # the option's own tokens, after the context's KV
                        rows = self._extend(batch, context + cont[:-1], len(context))
                        for row, target in zip(rows, cont[1:], strict=True):
                            token_lp, token_greedy = _logprob_and_greedy(row, target)
                            lp, greedy = lp + token_lp, greedy and token_greedy
                    results[index] = (lp, greedy)
                done += len(members)
                progress(fraction=done / len(pairs), message=f"{done}/{len(pairs)} continuations scored")
        finally:
            llama_cpp.llama_batch_free(batch)
        return results  # type: ignore[return-value]

    def _extend(self, batch, tokens: list[int], logits_from: int) -> list[np.ndarray]:
        """Make the context hold exactly `tokens`, computing only what it lacks; the logit rows of positions
        logits_from .. len(tokens)-1 (each predicts the token after it)."""
        import llama_cpp

        llm = self.llm
        keep = min(_common_prefix(llm.input_ids[: llm.n_tokens], tokens), logits_from)
        memory = llama_cpp.llama_get_memory(llm.ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1):  # a model whose cache cannot be cut
            llama_cpp.llama_memory_clear(memory, True)
            keep = 0
        llm.n_tokens = keep
        rows: list[np.ndarray] = []
        for first in range(keep, len(tokens), llm.n_batch):
            chunk = tokens[first:first + llm.n_batch]
            batch.n_tokens = len(chunk)
            for j, token in enumerate(chunk):
                batch.token[j], batch.pos[j] = token, first + j
                batch.n_seq_id[j], batch.seq_id[j][0] = 1, 0
                batch.logits[j] = first + j >= logits_from
            code = llama_cpp.llama_decode(llm.ctx, batch)
            if code != 0:
                llm.n_tokens = 0  # what the context holds is unknown now: start over next time
                raise RuntimeError(f"llama.cpp decode failed with code {code} at position {first}")
            for j in range(max(0, logits_from - first), len(chunk)):
                row = llama_cpp.llama_get_logits_ith(llm.ctx, j)
                rows.append(np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy())
            llm.input_ids[first:first + len(chunk)] = chunk
            llm.n_tokens = first + len(chunk)
            self.stats["tokens_computed"] += len(chunk)
        return rows
