"""Run the model server as one long call: load the engine, serve HTTP until told to stop.

`run_server` is what a job (or `inkstone serve`) runs: it starts the engine core process (engine_core.py: the
model and its step loop, apart from this process's HTTP event loop), reports loading and then "listening on
http://host:port" through the progress callback, posts the engine's stats every few seconds, and returns
cleanly once the cancel flag is set. A host other than loopback needs an API key: the server would otherwise
hand the model to anyone on the network.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.netaddr import is_loopback
from engine.progress import Progress, no_progress
from engine.serve.limits import DEFAULT_MAX_TOKENS, MAX_PROMPTS, MAX_REQUEST_BYTES, ServeLimits

STATS_EVERY_SECONDS = 5.0
CANCEL_POLL_SECONDS = 0.2


@dataclass
class ServeArgs:
    model_path: str
    """HF model folder to serve."""
    served_model_name: str | None = None
    """The model name clients send (default: the folder's name)."""
    host: str = "127.0.0.1"
    """Interface to listen on; anything but loopback requires api_key."""
    port: int = 8000
    """TCP port (0 picks a free one; the progress message says which)."""
    api_key: str | None = None
    """When set, clients must send `Authorization: Bearer <api_key>`."""
    device: str = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda[:N]"."""
    max_model_len: int | None = None
    """Longest prompt + output in tokens (default: the model's, capped by the KV cache)."""
    gpu_memory_utilization: float = 0.9
    """Fraction of GPU memory the engine may use."""
    dtype: str = "auto"
    """"auto", "float16", "bfloat16" or "float32"."""
    enable_prefix_caching: bool = True
    """Reuse the KV cache of prompt prefixes seen before."""
    cpu_kv_cache_gb: float = 2.0
    """RAM for the KV cache when running on the CPU."""
    enforce_eager: bool = False
    """Run every step eagerly: no compiled CPU decode graphs (each batch size compiles in the background the first
    time it is needed, minutes once, then cached on disk) and no CUDA graphs."""
    compile_cache_dir: str | None = None
    """Where compiled CPU decode graphs are kept between runs (default: torch's folder under /tmp)."""
    max_request_bytes: int = MAX_REQUEST_BYTES
    """Largest request body in bytes; a bigger one gets 413 before it is read or tokenized."""
    max_prompts: int = MAX_PROMPTS
    """Most prompts one /v1/completions request may carry (a list of prompts); more is a 400."""
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    """Output tokens for a chat request that sets no max_tokens (less when the context has less room)."""

    def limits(self) -> ServeLimits:
        return ServeLimits(max_request_bytes=self.max_request_bytes, max_prompts=self.max_prompts,
                           default_max_tokens=self.default_max_tokens)


def check_args(args: ServeArgs) -> None:
    """Raise ValueError naming the field for arguments that must not start a server."""
    if not is_loopback(args.host) and not args.api_key:
        raise ValueError(f"api_key: required to listen on {args.host!r}, which is not loopback; "
                         "set an API key or use host 127.0.0.1")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"port: must be in 0..65535, got {args.port}")
    args.limits().check()


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before the long model load, so a taken port fails at once and with a plain error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"could not listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def run_server(args: ServeArgs, progress: Progress = no_progress, cancel: threading.Event | None = None) -> None:
    """Load the model, serve until `cancel` is set (forever without one), then shut down cleanly."""
    import uvicorn

    from engine.infer import EngineConfig
    from engine.serve.app import create_app
    from engine.serve.core_client import EngineCoreClient

    check_args(args)
    with bind_socket(args.host, args.port) as sock:
        progress(0.0, f"loading {args.model_path}")
        config = EngineConfig(device=args.device, dtype=args.dtype, max_model_len=args.max_model_len,
                              gpu_memory_utilization=args.gpu_memory_utilization,
                              enable_prefix_caching=args.enable_prefix_caching,
                              cpu_kv_cache_gb=args.cpu_kv_cache_gb, enforce_eager=args.enforce_eager,
                              compile_cpu=not args.enforce_eager, compile_cache_dir=args.compile_cache_dir)
        config.validate()
        # The engine runs in a process of its own (engine_core.py); compiles it starts later are reported here.
        core = EngineCoreClient(args.model_path, config, progress=lambda message: progress(None, message))
        try:
            name = args.served_model_name or Path(args.model_path).name
            progress(1.0, f"loaded {name} (context {core.max_model_len} tokens)")
            if cancel is not None and cancel.is_set():
                return
            app = create_app(core, name, api_key=args.api_key, limits=args.limits())
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
            asyncio.run(_serve(server, sock, app, progress, cancel))
        finally:
            core.shutdown()


async def _serve(server, sock: socket.socket, app, progress: Progress, cancel: threading.Event | None) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting (see the log above)")
        await asyncio.sleep(0.05)
    host, port = sock.getsockname()[:2]
    progress(None, f"listening on http://{f'[{host}]' if ':' in host else host}:{port}")
    loop = asyncio.get_running_loop()
    next_stats = loop.time() + STATS_EVERY_SECONDS
    while not task.done():
        if cancel is not None and cancel.is_set():
            server.should_exit = True
        if loop.time() >= next_stats:
            stats = app.state.engine.stats()
            progress(None, None, {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))})
            next_stats += STATS_EVERY_SECONDS
        await asyncio.wait([task], timeout=CANCEL_POLL_SECONDS)
    task.result()
