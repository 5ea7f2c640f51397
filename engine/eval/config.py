"""The arguments of one evaluation run: the same dataclass feeds the `eval` job, the CLI flags and the UI form.

Every choice that changes a score (mode, shots and their sampler, chain-of-thought, base or chat prompt,
CircularEval, split, samples) is a field here and part of the run's settings hash, so two results are only
compared when they were produced the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

SCORE_FIELDS = ("mode", "shots", "sampler", "seed", "cot", "style", "circular", "split", "limit", "samples",
                "temperature", "max_tokens")


@dataclass
class EvalConfig:
    model: str = "smollm2-135m-instruct"
    """Registered model name or id, a model folder, an exported .gguf file (run by llama.cpp) or an
    OpenAI-compatible URL (http://host:port/v1)."""
    adapter: str = ""
    """A LoRA adapter folder (e.g. a finetune's jobs/N/adapter) applied to the model: merged once, cached, then
    evaluated like any model."""
    tasks: str = "arc_easy"
    """Comma-separated tasks (mmlu, mmlu_<subject>, arc_easy, arc_challenge, hellaswag, winogrande, piqa, gsm8k,
    math500, humaneval, mbpp; agent tasks bfcl_simple, bfcl_multiple, bfcl_parallel, bfcl_parallel_multiple,
    bfcl_irrelevance, gsm8k_tool, tooltalk_easy with workers 1 or a URL) or paths of your own .csv/.jsonl sets."""
    mode: Literal["ppl", "gen"] = "ppl"
    """ppl: the option with the highest log-likelihood; gen: generate, then extract the answer."""
    shots: int = 0
    """Few-shot examples before each question."""
    sampler: Literal["", "first_n", "random"] = ""
    """How few-shot examples are picked: first_n, random (seeded), or empty for the task's default (lm-eval's)."""
    seed: int = 1234
    """Seed of the few-shot sampler and of sampling when temperature > 0."""
    cot: bool = False
    """Chain-of-thought prompts (generation mode): ask for reasoning before the answer."""
    style: Literal["base", "chat"] = "base"
    """base: plain text prompts as lm-eval; chat: the model's chat template."""
    circular: bool = False
    """CircularEval for multiple-choice tasks: every rotation of the options must be answered right."""
    limit: int = 0
    """Evaluate only the first N questions of each task (0: all)."""
    split: str = ""
    """Data split (default: the task's, e.g. test for MMLU and ARC)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Model dtype; float32 matches lm-evaluation-harness's default."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda[:N]."""
    samples: int = 1
    """Samples per question in generation mode (pass@k needs n >= k and temperature > 0)."""
    temperature: float = 0.0
    """Sampling temperature in generation mode; 0 is greedy."""
    max_tokens: int = 0
    """Generation budget per answer (0: the task's default)."""
    workers: int = 1
    """Engine processes the questions are split over (data parallel: one per GPU, or CPU processes); scores equal
    one worker's."""
    judge: str = ""
    """LLM judge for open answers (a registered model, a folder, a .gguf or an OpenAI-compatible URL; its key from
    INKSTONE_JUDGE_API_KEY or INKSTONE_EVAL_API_KEY): reports judge_accuracy."""
    against: str = ""
    """A second model answering the same prompts; the judge compares both answers in both orders and reports the
    model's win_rate against it (needs judge)."""
    judge_tasks: str = ""
    """Tasks the judge grades: empty for your own open and chat sets, 'all' for every generation task, or
    comma-separated task names."""
    contamination: str = ""
    """A registered dataset (name or id) or a data file: items sharing a 13-gram with it are marked contaminated
    and every metric is also reported on the clean rest."""
    output: str = ""
    """Write {"results": {task: {metric: value}}, "settings": …} to this JSON file."""

    def validate(self) -> None:
        from engine.eval.tasks import expand

        expand(self.tasks)
        if self.shots < 0 or self.limit < 0 or self.max_tokens < 0:
            raise ValueError("shots, limit, max_tokens: must be >= 0")
        if self.adapter and (self.model.startswith(("http://", "https://")) or self.model.lower().endswith(".gguf")):
            raise ValueError("adapter: applies to an HF model (registered, or a folder), not to a GGUF file or a URL")
        if self.workers < 1:
            raise ValueError(f"workers: must be >= 1, got {self.workers}")
        if self.samples < 1:
            raise ValueError(f"samples: must be >= 1, got {self.samples}")
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError("temperature: several samples per question need temperature > 0")
        if self.temperature < 0:
            raise ValueError(f"temperature: must be >= 0, got {self.temperature}")
        self._validate_judge()

    def _validate_judge(self) -> None:
        from engine.eval.judge import is_judged
        from engine.eval.tasks import expand, get_task

        if not self.judge:
            for name in ("against", "judge_tasks"):
                if getattr(self, name).strip():
                    raise ValueError(f"{name}: needs a judge (--judge MODEL or URL)")
            return
        if self.against.strip() and self.against.strip() == self.model.strip():
            raise ValueError(f"against: must name another model than the one evaluated ({self.model})")
        if self.samples > 1:
            raise ValueError("samples: the judge grades one answer per question; use samples 1 with judge")
        names = [n for _, n in expand(self.tasks)]
        wanted = [n.strip() for n in self.judge_tasks.split(",") if n.strip() and n.strip() != "all"]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"judge_tasks: {', '.join(missing)} not among the tasks ({self.tasks})")
        if not any(is_judged(get_task(n), self) for n in names):
            raise ValueError("judge: none of the tasks has open answers to grade (your own open or chat sets, or "
                             "generation tasks named in judge_tasks, 'all' for every one; code is run, not judged)")

    def settings(self) -> dict:
        """The choices that change a score, as recorded with every result (the judge's only when there is one,
        so unjudged runs keep their settings hash)."""
        chosen = {k: v for k, v in asdict(self).items() if k in SCORE_FIELDS}
        if self.judge:
            from engine.eval.judge import protocol_hash

            chosen |= {"judge": self.judge, "against": self.against, "judge_tasks": self.judge_tasks,
                       "judge_prompt": protocol_hash()}
        return chosen

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:10]
