"""What accelerators this machine has, read through NVML (pynvml) without importing torch.

NVML raises NVMLError_LibraryNotFound where there is no NVIDIA driver: that simply means no GPUs here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass
class GpuReading:
    index: int
    name: str
    util_pct: float
    mem_used: int
    mem_total: int
    temp_c: float
    power_w: float
    sm_clock_mhz: float


@functools.lru_cache(maxsize=1)
def nvml_status() -> str:
    """'ok', or why NVML is unavailable (shown on the Telemetry page)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return "ok"
    except ImportError:
        return "nvidia-ml-py is not installed"
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
        return f"no NVIDIA driver found ({type(e).__name__})"


def gpu_count() -> int:
    if nvml_status() != "ok":
        return 0
    import pynvml

    return pynvml.nvmlDeviceGetCount()


def read_gpus() -> list[GpuReading]:
    if nvml_status() != "ok":
        return []
    import pynvml

    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        util = pynvml.nvmlDeviceGetUtilizationRates(h)
        name = pynvml.nvmlDeviceGetName(h)
        out.append(
            GpuReading(
                index=i,
                name=name.decode() if isinstance(name, bytes) else name,
                util_pct=float(util.gpu),
                mem_used=int(mem.used),
                mem_total=int(mem.total),
                temp_c=float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
                power_w=pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
                sm_clock_mhz=float(pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            )
        )
    return out
