"""Job kind `serve`: a registered model behind the OpenAI-compatible server, alive until cancelled.

Its arguments are the server's own (`engine.serve.ServeArgs`) with a registered model in place of a folder:
a field added to the server is an option of `inkstone serve` at once. The job fills in what a user does not
give: the model's folder and name from the registry, a free port, and the API key from the environment.

The port is chosen before loading and written into the job's result at once, so the Chat page (and anyone
else) can find the server while the model is still loading and poll its /health. Engine statistics become
metric points with a step that grows with each sample, so the Jobs page charts them over time.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.netaddr import bind_host
from engine.ports import free_port
from engine.progress import Progress, no_progress
from engine.serve import ServeArgs
from jobs.context import JobContext
from jobs.kinds import SET_BY_JOB, JobKind, register

# The key is taken from the environment, never stored with the job's arguments in the database.
API_KEY_ENV = "INKSTONE_API_KEY"


@dataclass
class ServeModelArgs(ServeArgs):
    model_path: str = field(default="", metadata=SET_BY_JOB)
    """Set by the job: the registered model's folder, or the GGUF file."""
    served_model_name: str | None = field(default=None, metadata=SET_BY_JOB)
    """Set by the job: the registered name, or the GGUF path as given."""
    api_key: str | None = field(default=None, metadata=SET_BY_JOB)
    """Set by the job from INKSTONE_API_KEY (`--api-key`), so the key is never stored with the job."""
    port: int = 0
    """TCP port (0 picks a free one)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights and KV cache; auto: bf16/fp16 on a GPU, bf16 on a CPU with native bf16, else float32."""
    model: str = "smollm2-135m-instruct"
    """Registered model name or id, or a .gguf file (served through llama.cpp)."""

    def validate(self) -> None:
        from engine.serve.server import check_args

        self.host = bind_host(self.host)  # an empty host means loopback, never every interface
        key = os.environ.get(API_KEY_ENV)
        try:
            check_args(dataclasses.replace(self, api_key=key))
        except ValueError as e:
            if not key and str(e).startswith("api_key"):
                raise ValueError(f"host: {self.host} is not loopback; set an API key ({API_KEY_ENV} or "
                                 "--api-key)") from None
            raise


def _target(root, ref: str, progress: Progress = no_progress) -> tuple[str, str, int | None]:
    """(path to load, name clients send, registry id) of a registered model or a GGUF file."""
    from app.registry import gguf_source, is_gguf, resolve_model

    if is_gguf(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model: {ref} is not a file")
        return str(path.resolve()), ref, gguf_source(root, path)
    model = resolve_model(root, ref, progress)  # the bundled model is set up on first use
    return model.path, model.name, model.id


def _stepped(progress):
    """The job's progress callback, giving each metrics sample the next step (the server posts them unnumbered)."""
    steps = itertools.count(1)

    def report(fraction=None, message=None, metrics=None, step=None):
        if metrics and step is None:
            step = next(steps)
        progress(fraction, message, metrics, step)

    return report


def run(args: ServeModelArgs, ctx: JobContext) -> dict:
    from app.db import session
    from app.tables import Job
    from engine.progress import check_cancel
    from engine.serve.server import run_server

    model_path, name, model_id = _target(ctx.root, args.model, ctx.progress)
    port = args.port or free_port(args.host)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{port}"
    with session(ctx.root) as s:
        job = s.get(Job, ctx.job_id)
        job.result = {"url": url, "model": name}
        job.model_id = model_id
        s.add(job)
    server_args = dataclasses.replace(args, model_path=model_path, served_model_name=name, port=port,
                                      api_key=os.environ.get(API_KEY_ENV) or None)
    run_server(server_args, _stepped(ctx.progress), ctx.cancel)
    check_cancel(ctx.cancel)  # stopped on request: the job reads "cancelled", not "succeeded"
    return {"url": url, "model": name}


def _gpus(args: ServeModelArgs) -> int:
    from app.registry import is_gguf

    # The installer builds llama.cpp for the CPU, so a GGUF takes a GPU slot only when asked for one outright.
    return 0 if args.device == "cpu" or (is_gguf(args.model) and args.device == "auto") else 1


KIND = register(JobKind("serve", "Model server", ServeModelArgs, "jobs.tasks.serve:run", gpus=_gpus))
