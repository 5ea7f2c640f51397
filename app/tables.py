"""The rows of Inkstone's one SQLite database, linked so a GGUF can be traced back to its data.

Lineage: a Model points at the job that made it, its parent model and its dataset; a Dataset at the job
that made it; a Job at the model and dataset it used. Time is stored as UTC epoch seconds (float): cheap to
compare, chart and downsample.
"""

from __future__ import annotations

import time

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def now() -> float:
    return time.time()


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    id: int = Field(default=1, primary_key=True)
    version: int
    updated_at: float = Field(default_factory=now)


class Model(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    path: str  # local HF folder (config + safetensors + tokenizer)
    source: str  # bundled | folder | gguf | finetune | merge
    source_path: str = ""  # where it was imported from (a GGUF file, a folder)
    arch: str = ""
    params: int = 0
    context_len: int = 0
    dtype: str = ""
    size_bytes: int = 0
    has_chat_template: bool = False
    managed: bool = False  # True when the folder lives in the data dir and is deleted with the row
    parent_model_id: int | None = Field(default=None, foreign_key="model.id")
    dataset_id: int | None = Field(default=None, foreign_key="dataset.id")
    job_id: int | None = Field(default=None, foreign_key="job.id")
    created_at: float = Field(default_factory=now)


class Dataset(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    path: str
    format: str = ""
    rows: int = 0
    size_bytes: int = 0
    recipe: dict = Field(default_factory=dict, sa_column=Column(JSON))
    inputs: list = Field(default_factory=list, sa_column=Column(JSON))
    job_id: int | None = Field(default=None, foreign_key="job.id")
    created_at: float = Field(default_factory=now)


class Job(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    title: str = ""
    status: str = Field(default="queued", index=True)  # see jobs.status
    params: dict = Field(default_factory=dict, sa_column=Column(JSON))
    result: dict = Field(default_factory=dict, sa_column=Column(JSON))
    progress: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: str = ""
    gpus: int = 0  # GPUs the job needs (0: a CPU job)
    gpu_indices: str = ""  # the GPUs it holds while running, e.g. "0,1"
    pid: int | None = None
    log_path: str = ""
    cancel_requested: bool = False
    retry_of: int | None = Field(default=None, foreign_key="job.id")
    model_id: int | None = Field(default=None, foreign_key="model.id")
    dataset_id: int | None = Field(default=None, foreign_key="dataset.id")
    created_at: float = Field(default_factory=now, index=True)
    started_at: float | None = None
    finished_at: float | None = None


class Metric(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    step: int
    name: str
    value: float
    t: float = Field(default_factory=now)


class HostSample(SQLModel, table=True):
    __tablename__ = "host_sample"
    id: int | None = Field(default=None, primary_key=True)
    t: float = Field(default_factory=now, index=True)
    cpu_pct: float
    ram_used: int
    ram_total: int
    disk_used: int
    disk_total: int


class GpuSample(SQLModel, table=True):
    __tablename__ = "gpu_sample"
    id: int | None = Field(default=None, primary_key=True)
    t: float = Field(default_factory=now, index=True)
    gpu: int
    name: str = ""
    util_pct: float
    mem_used: int
    mem_total: int
    temp_c: float
    power_w: float
    sm_clock_mhz: float


class ChatSession(SQLModel, table=True):
    __tablename__ = "chat_session"
    id: int | None = Field(default=None, primary_key=True)
    title: str = ""
    system_prompt: str = ""
    models: list = Field(default_factory=list, sa_column=Column(JSON))  # one name, or two side by side
    params: dict = Field(default_factory=dict, sa_column=Column(JSON))  # sampling parameters
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now, index=True)


class ChatMessage(SQLModel, table=True):
    __tablename__ = "chat_message"
    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="chat_session.id", index=True)
    pane: int = 0  # which model of a side-by-side session answered (user turns are in every pane)
    role: str  # system | user | assistant
    content: str
    model_name: str = ""
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    tokens_per_s: float = 0.0
    finish_reason: str = ""
    created_at: float = Field(default_factory=now)


class Export(SQLModel, table=True):
    """One exported file (a GGUF of one quant type), linked to the model it came from."""

    id: int | None = Field(default=None, primary_key=True)
    model_id: int | None = Field(default=None, foreign_key="model.id", index=True)
    job_id: int | None = Field(default=None, foreign_key="job.id")
    adapter_path: str = ""  # a LoRA adapter merged in before export, if any
    format: str = "gguf"
    quant: str = ""  # f16, q8_0, q4_k_m, …
    path: str = ""
    size_bytes: int = 0
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON))  # verification: top-1, ppl delta, tok/s
    created_at: float = Field(default_factory=now)


class EvalRun(SQLModel, table=True):
    """One evaluation of one model on a list of tasks with one set of settings (the `eval` job's record)."""

    __tablename__ = "eval_run"
    id: int | None = Field(default=None, primary_key=True)
    model_ref: str = ""  # what was evaluated, as given: a model name, a folder, a GGUF path or a URL
    model_id: int | None = Field(default=None, foreign_key="model.id", index=True)
    export_id: int | None = Field(default=None, foreign_key="export.id")
    dataset_id: int | None = Field(default=None, foreign_key="dataset.id")  # a custom test set, if one
    job_id: int | None = Field(default=None, foreign_key="job.id", index=True)
    tasks: str = ""
    mode: str = ""  # ppl | gen
    settings: dict = Field(default_factory=dict, sa_column=Column(JSON))
    settings_hash: str = Field(default="", index=True)
    status: str = "running"  # running | done | failed
    created_at: float = Field(default_factory=now, index=True)
    finished_at: float | None = None


class EvalResult(SQLModel, table=True):
    """One metric of one task in one run, with its standard error and item count."""

    __tablename__ = "eval_result"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="eval_run.id", index=True)
    task: str = Field(index=True)
    metric: str
    value: float
    stderr: float | None = None
    n: int = 0
    settings_hash: str = ""
    licence: str = ""


class EvalSample(SQLModel, table=True):
    """One scored item: what the model saw, what it answered, what was read out of it and whether it was right."""

    __tablename__ = "eval_sample"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="eval_run.id", index=True)
    task: str = Field(index=True)
    doc_id: str = ""
    rotation: int = 0  # CircularEval: how far the options were rotated
    prompt: str = ""
    answer: str = ""
    extracted: str = ""
    gold: str = ""
    correct: bool = False
    logprobs: list = Field(default_factory=list, sa_column=Column(JSON))  # per option, PPL mode
    outcome: str = ""  # code: pass | fail | timeout | error
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON))  # think length, program, sandbox output


class EvalCacheEntry(SQLModel, table=True):
    """A model's answer to one exact request (model identity + prompt + settings hashed): evals resume from it."""

    __tablename__ = "eval_cache"
    key: str = Field(primary_key=True)
    value: dict = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: float = Field(default_factory=now)


class AgentRun(SQLModel, table=True):
    """One agent run: what was asked, by which loop and model, how it ended, its rating and its whole trace."""

    __tablename__ = "agent_run"
    id: int | None = Field(default=None, primary_key=True)
    title: str = ""
    question: str = ""
    loop: str = ""  # function_calling | react | plan_execute
    model: str = ""
    tools: list = Field(default_factory=list, sa_column=Column(JSON))  # the tool names offered
    status: str = Field(default="running", index=True)  # engine.agents.trace.STATUSES
    answer: str = ""
    steps: int = 0
    tokens: int = 0
    rating: int = Field(default=0, index=True)  # 0 not rated, 1 (bad) to 5 (good)
    trace: dict = Field(default_factory=dict, sa_column=Column(JSON))  # engine.agents.trace.Trace.to_dict()
    created_at: float = Field(default_factory=now, index=True)
    finished_at: float | None = None
