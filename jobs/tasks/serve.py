"""Job kind `serve`: a registered model behind the OpenAI-compatible server, alive until cancelled.

The port is chosen before loading and written into the job's result at once, so the Chat page (and anyone
else) can find the server while the model is still loading and poll its /health.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from engine.ports import free_port
from jobs.context import JobContext
from jobs.kinds import JobKind, register

# The key is taken from the environment, never stored with the job's arguments in the database.
API_KEY_ENV = "INKSTONE_API_KEY"


@dataclass
class ServeModelArgs:
    model: str = "smollm2-135m-instruct"
    """Registered model name or id, or a .gguf file (served through llama.cpp)."""
    host: str = "127.0.0.1"
    """Interface to listen on; anything but loopback needs an API key (INKSTONE_API_KEY or --api-key)."""
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    """Port (0 picks a free one)."""
    device: str = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda"."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights and KV cache; auto: bf16/fp16 on a GPU, bf16 on a CPU with native bf16, else float32."""
    max_model_len: Annotated[int, Field(ge=0)] = 0
    """Longest prompt + output in tokens (0: the model's, capped by the KV cache)."""
    gpu_memory_utilization: Annotated[float, Field(gt=0.05, le=0.98)] = 0.9
    """Fraction of GPU memory the engine may use (weights + KV cache)."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of shared prompt prefixes (multi-turn chats)."""
    cpu_kv_cache_gb: Annotated[float, Field(gt=0, le=512)] = 2.0
    """RAM for the KV cache when running on the CPU."""

    def validate(self) -> None:
        from app.settings import is_loopback

        if not is_loopback(self.host) and not os.environ.get(API_KEY_ENV):
            raise ValueError(f"host: {self.host} is not loopback; set an API key ({API_KEY_ENV} or --api-key)")


def _target(root, ref: str) -> tuple[str, str, int | None]:
    """(path to load, name clients send, registry id) of a registered model or a GGUF file."""
    from app.registry import gguf_source, is_gguf, resolve_model

    if is_gguf(ref):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model: {ref} is not a file")
        return str(path.resolve()), ref, gguf_source(root, path)
    model = resolve_model(root, ref)
    return model.path, model.name, model.id


def run(args: ServeModelArgs, ctx: JobContext) -> dict:
    from app.db import session
    from app.tables import Job
    from engine.progress import check_cancel
    from engine.serve.server import ServeArgs, run_server

    model_path, name, model_id = _target(ctx.root, args.model)
    port = args.port or free_port(args.host)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{port}"
    with session(ctx.root) as s:
        job = s.get(Job, ctx.job_id)
        job.result = {"url": url, "model": name}
        job.model_id = model_id
        s.add(job)
    run_server(ServeArgs(model_path=model_path, served_model_name=name, host=args.host, port=port,
                         api_key=os.environ.get(API_KEY_ENV) or None, device=args.device, dtype=args.dtype,
                         max_model_len=args.max_model_len or None,
                         gpu_memory_utilization=args.gpu_memory_utilization,
                         enable_prefix_caching=args.enable_prefix_caching,
                         cpu_kv_cache_gb=args.cpu_kv_cache_gb), ctx.progress, ctx.cancel)
    check_cancel(ctx.cancel)  # stopped on request: the job reads "cancelled", not "succeeded"
    return {"url": url, "model": name}


def _gpus(args: ServeModelArgs) -> int:
    from app.registry import is_gguf

    # The installer builds llama.cpp for the CPU, so a GGUF takes a GPU slot only when asked for one outright.
    return 0 if args.device == "cpu" or (is_gguf(args.model) and args.device == "auto") else 1


KIND = register(JobKind("serve", "Model server", ServeModelArgs, "jobs.tasks.serve:run", gpus=_gpus))
