"""The one argument dataclass of a finetune: the CLI flags, the job parameters and the wizard's form.

Field docs feed CLI help and UI labels. `validate()` runs before anything is queued: it reads the data file
(so a broken line is reported with file, line and field) and checks cross-field rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field

METHODS = ("lora", "qlora", "full")
OBJECTIVES = ("auto", "sft", "pretrain")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ZERO_STAGES = ("", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")


@dataclass
class FinetuneConfig:
    model: str = "smollm2-135m-instruct"
    """Base model: registered name or id, or an HF folder path."""
    data: str = ""
    """Training file (.jsonl, .json, .csv, .parquet, .txt): alpaca, sharegpt, OpenAI messages or raw text."""
    method: str = "lora"
    """lora, qlora (4-bit nf4 base, bitsandbytes) or full."""
    objective: str = "auto"
    """sft (loss on assistant turns), pretrain (raw text, packed) or auto (pretrain for raw text)."""
    data_format: str = "auto"
    """auto, alpaca, sharegpt, messages or text."""
    column_map: dict[str, str] = field(default_factory=dict)
    """Rename columns to ours, e.g. {"instruction": "question", "output": "answer"}."""
    seq_len: Annotated[int, Field(ge=16, le=131072)] = 1024
    """Tokens per training sequence (longer samples are truncated)."""
    packing: bool = True
    """Pack several samples into one sequence (positions restart per sample, no cross-sample attention)."""
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 1
    """Sequences per micro-batch per process."""
    grad_accum: Annotated[int, Field(ge=1, le=4096)] = 4
    """Micro-batches per optimizer step."""
    epochs: Annotated[int, Field(ge=1, le=1000)] = 1
    """Passes over the training rows (a resumed run may raise it to train more)."""
    max_steps: Annotated[int, Field(ge=0)] = 0
    """Stop after this many optimizer steps (0: run all epochs)."""
    lr: Annotated[float, Field(gt=0, le=1.0)] = 2e-4
    """Peak learning rate."""
    lr_schedule: str = "cosine"
    """cosine, linear or constant, after the warmup."""
    warmup_ratio: Annotated[float, Field(ge=0, le=0.5)] = 0.03
    """Fraction of the steps spent warming up linearly."""
    weight_decay: Annotated[float, Field(ge=0, le=1.0)] = 0.0
    """AdamW weight decay."""
    max_grad_norm: Annotated[float, Field(ge=0)] = 1.0
    """Clip gradients to this norm (0: no clipping)."""
    lora_r: Annotated[int, Field(ge=1, le=1024)] = 16
    """LoRA rank."""
    lora_alpha: Annotated[int, Field(ge=1)] = 32
    """LoRA alpha (scale = alpha / r)."""
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Dropout on the LoRA input."""
    lora_targets: str = "all-linear"
    """Modules to adapt: all-linear, or comma-separated names (q_proj,v_proj)."""
    grad_checkpointing: bool = True
    """Recompute activations in the backward pass (less memory, about a third more time)."""
    precision: str = "auto"
    """auto (bf16 on GPUs that have it, else fp16; fp32 on CPU), bf16, fp16 or fp32."""
    eval_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    """Fraction of rows held out for eval loss."""
    eval_every: Annotated[int, Field(ge=0)] = 0
    """Eval every N steps (0: at the end only, when there is an eval split)."""
    save_every: Annotated[int, Field(ge=0)] = 50
    """Checkpoint every N steps (0: only at the end and when stopped)."""
    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    """How many recent checkpoints to keep."""
    seed: int = 42
    """Seed for init, data order and dropout."""
    output: str = ""
    """Output folder (default: the job's folder)."""
    resume_from: str = ""
    """Checkpoint folder, run folder or finetune job id to continue from (e.g. to train more epochs)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    num_procs: Annotated[int, Field(ge=1, le=1024)] = 1
    """Processes to train with (one per GPU; on the CPU, gloo processes)."""
    gpus: str = ""
    """GPUs to use, e.g. "0,1" (empty: all visible, up to num_procs)."""
    deepspeed: str = ""
    """DeepSpeed ZeRO for full/pretrain runs: zero1, zero2, zero3, zero2_offload, zero3_offload (empty: DDP)."""
    hostfile: str = ""
    """DeepSpeed hostfile for multi-node runs (lines "host slots=N"); needs deepspeed set."""
    merge: bool = False
    """After training, merge the adapter into the base and register the result as a model."""
    name: str = ""
    """Name to register the merged or fully finetuned model under (default: derived from the job)."""

    @property
    def is_adapter(self) -> bool:
        return self.method in ("lora", "qlora")

    def validate(self) -> None:
        """Cross-field and file checks; ValueError("field: message")."""
        for name, value, allowed in (("method", self.method, METHODS), ("objective", self.objective, OBJECTIVES),
                                     ("lr_schedule", self.lr_schedule, SCHEDULES),
                                     ("precision", self.precision, PRECISIONS),
                                     ("deepspeed", self.deepspeed, ZERO_STAGES)):
            if value not in allowed:
                raise ValueError(f"{name}: {value!r} is not one of {', '.join(a or '(empty)' for a in allowed)}")
        if not self.data:
            raise ValueError("data: give a training file")
        if self.deepspeed and self.is_adapter:
            raise ValueError("deepspeed: ZeRO is for full finetunes and pretraining; LoRA runs use DDP")
        if self.hostfile and not self.deepspeed:
            raise ValueError("hostfile: multi-node runs go through DeepSpeed; set deepspeed too")
        if self.hostfile and not Path(self.hostfile).is_file():
            raise ValueError(f"hostfile: {self.hostfile}: no such file")
        if self.method == "full" and self.merge:
            raise ValueError("merge: a full finetune has no adapter to merge; it is registered as it is")
        from engine.finetune.data import DataError, load_examples

        try:
            fmt, _ = load_examples(self.data, self.data_format, self.column_map)
        except DataError as e:
            raise ValueError(f"data: {e}") from None
        if self.objective == "sft" and fmt == "text":
            raise ValueError(f"objective: {self.data} holds raw text; SFT needs conversations (use pretrain)")

    def resolved_objective(self, data_format: str) -> str:
        if self.objective != "auto":
            return self.objective
        return "pretrain" if data_format == "text" else "sft"
