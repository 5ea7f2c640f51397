"""Incremental detokenization with stop strings, for streaming.

Decoding token by token breaks on two things: byte-level BPE splits one character (Chinese, emoji) over several
tokens, and sentencepiece drops or keeps a leading space depending on the neighbours. So each new token is
decoded together with a few tokens of context, and text is released only when the decode no longer ends in a
replacement character. Stop strings may straddle tokens: the last (longest stop - 1) characters are held back
until the sequence finishes, so a stop string is never emitted, even in part.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"
# Tokens of the prompt kept as decoding context, so the first output token gets its spacing right.
PROMPT_CONTEXT = 5


class Detokenizer:
    def __init__(self, tokenizer, prompt_ids: list[int], stop: list[str]):
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids[-PROMPT_CONTEXT:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.stop = stop
        self.holdback = max((len(s) for s in stop), default=1) - 1
        self.text = ""
        self.emitted = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add_token(self, token_id: int) -> bool:
        """Append one generated token; returns True when a stop string now ends the text (text cut before it)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        full = self._decode(self.ids[self.prefix_offset:])
        if len(full) <= len(prefix) or full.endswith(REPLACEMENT):
            return False
        checked = len(self.text)
        self.text += full[len(prefix):]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._cut_at_stop(max(0, checked - self.holdback))

    def _cut_at_stop(self, search_from: int) -> bool:
        cut = min((i for i in (self.text.find(s, search_from) for s in self.stop) if i >= 0), default=-1)
        if cut < 0:
            return False
        self.text = self.text[:cut]
        return True

    def take(self, finished: bool) -> str:
        """The text not yet handed out; while running, keep back what could be the start of a stop string."""
        end = len(self.text) if finished else max(self.emitted, len(self.text) - self.holdback)
        delta = self.text[self.emitted:end]
        self.emitted = end
        return delta
