"""One sequence being generated: its tokens, how far its KV is computed, its blocks and its sampling state.

A request with n samples owns n sequences. Everything the scheduler, block manager, model runner and sampler
need about a sequence lives here, so each of them stays a small function of a list of sequences.
"""

from __future__ import annotations

from enum import Enum, auto

import torch

from engine.infer.detokenizer import Detokenizer
from engine.infer.outputs import TokenLogprob
from engine.infer.sampling_params import SamplingParams


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


class Sequence:
    def __init__(self, request_id: str, index: int, prompt_ids: list[int], params: SamplingParams,
                 detokenizer: Detokenizer | None = None):
        self.request_id = request_id
        self.index = index
        self.params = params
        self.status = SequenceStatus.WAITING
        self.token_ids = list(prompt_ids)
        self.num_prompt_tokens = len(prompt_ids)
        # Tokens whose K/V are in this sequence's blocks; reset to 0 on preemption (recompute).
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0
        self.block_table: list[int] = []
        # Chain hashes of this sequence's full blocks, in order; registered with the block manager.
        self.block_hashes: list[int] = []
        self.detokenizer = detokenizer
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            # Each of the n samples gets its own stream, so samples differ yet repeat run to run.
            self.generator = torch.Generator().manual_seed(params.seed + index)
        self.finish_reason: str | None = None
        self.error: str | None = None
        # Produced since the last RequestOutput of this sequence.
        self.pending_token_ids: list[int] = []
        self.pending_logprobs: list[TokenLogprob] = []
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.prompt_logprobs_sent = False
        self.num_preemptions = 0
        # xgrammar GrammarMatcher of a constrained sequence (set by the engine); it has accepted every output token
        # so far, and stays as it is across preemption because those tokens stay.
        self.matcher = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == SequenceStatus.FINISHED

    @property
    def wants_prompt_logprobs(self) -> bool:
        return self.params.prompt_logprobs is not None and not self.prompt_logprobs_sent and self.index == 0

    def reset_for_recompute(self) -> None:
        """After preemption (blocks already freed): every token, prompt and output, is computed again."""
        self.num_preemptions += 1
        self.status = SequenceStatus.WAITING
        if not self.prompt_logprobs_sent:
            self.prompt_logprobs = None
