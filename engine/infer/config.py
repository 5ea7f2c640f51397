"""Engine-wide settings: device, memory budget, batching limits; validated once at engine start."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineConfig:
    device: str = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda[:N]"."""
    dtype: str = "auto"
    """"auto" (bf16/fp16 on CUDA; on CPU bf16 where it computes bf16 natively, else fp32) or a torch dtype name."""
    max_model_len: int | None = None
    """Longest prompt + output in tokens; default: the model's, capped by what the KV cache holds."""
    max_num_seqs: int = 256
    """Most sequences running in one step."""
    max_num_batched_tokens: int = 8192
    """Token budget of one step; longer prompts are prefilled in chunks."""
    block_size: int = 16
    """Tokens per KV cache block."""
    enable_prefix_caching: bool = True
    """Reuse the KV of full blocks whose token prefix was seen before."""
    gpu_memory_utilization: float = 0.9
    """Fraction of GPU memory the engine may use (weights, activations and KV cache)."""
    cpu_kv_cache_gb: float = 2.0
    """RAM for the KV cache when running on the CPU."""
    num_kv_blocks: int | None = None
    """Force the number of KV blocks (tests use it to force preemption)."""
    enforce_eager: bool = False
    """Disable CUDA graphs and torch.compile (on the CPU: run decode steps eagerly instead of compiled graphs)."""
    compile_cpu: bool = False
    """On the CPU, run decode steps through torch.compile'd graphs (one per batch-size bucket: 1, 4, 8, 16), each
    compiled in the background the first time it is needed (eager until then) and cached on disk."""
    compile_cache_dir: str | None = None
    """Where inductor keeps compiled CPU decode graphs between runs (default: torch's folder under /tmp)."""

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        positive_ints = ("max_num_seqs", "max_num_batched_tokens", "block_size")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        for name in ("max_model_len", "num_kv_blocks"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: must be a positive integer or None, got {value!r}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization!r}")
        if not self.cpu_kv_cache_gb > 0:
            raise ValueError(f"cpu_kv_cache_gb: must be > 0, got {self.cpu_kv_cache_gb!r}")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype: must be 'auto', 'float32', 'float16' or 'bfloat16', got {self.dtype!r}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device: must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
