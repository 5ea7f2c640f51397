"""Prometheus text-format metrics for the model server, written by hand (the format is small; no dependency).

Engine gauges and token counters come from the engine's `stats()` snapshot; request latencies (time to first
token, end to end) are observed by the async engine as requests finish. Names follow Prometheus conventions:
counters end in `_total`, durations are in seconds.
"""

from __future__ import annotations

import math
import threading
from collections import Counter

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PREFIX = "inkstone_"

# (stats key, metric name, type, help)
ENGINE_SERIES = (
    ("running", "num_requests_running", "gauge", "Requests being decoded now."),
    ("waiting", "num_requests_waiting", "gauge", "Requests queued for a slot."),
    ("kv_blocks_total", "kv_cache_blocks", "gauge", "KV-cache blocks in the pool."),
    ("kv_blocks_used", "kv_cache_blocks_used", "gauge", "KV-cache blocks in use."),
    ("prompt_tokens", "prompt_tokens_total", "counter", "Prompt tokens processed."),
    ("cached_prompt_tokens", "prefix_cache_hit_tokens_total", "counter",
     "Prompt tokens served from the prefix cache instead of being computed."),
    ("generation_tokens", "generation_tokens_total", "counter", "Tokens generated."),
    ("preemptions", "num_preemptions_total", "counter", "Requests preempted to free KV-cache blocks."),
)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """A cumulative-bucket histogram, as Prometheus exposes one."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = (*buckets, math.inf)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, cumulative = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        out += [f"{name}_sum {_number(self.total)}", f"{name}_count {self.count}"]
        return out


class ServerMetrics:
    """Latency histograms and finish counters; observed from the engine thread, rendered on request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.time_to_first_token = Histogram()
        self.e2e_latency = Histogram()
        self.finished = Counter()

    def observe_finished(self, finish_reason: str, e2e_seconds: float, ttft_seconds: float | None) -> None:
        with self.lock:
            self.finished[finish_reason] += 1
            self.e2e_latency.observe(e2e_seconds)
            if ttft_seconds is not None:
                self.time_to_first_token.observe(ttft_seconds)

    def render(self, stats: dict) -> str:
        lines = []

        def header(name: str, kind: str, help_text: str) -> None:
            lines.extend([f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"])

        for key, name, kind, help_text in ENGINE_SERIES:
            header(name, kind, help_text)
            lines.append(f"{PREFIX}{name} {_number(stats.get(key, 0))}")
        total, used = stats.get("kv_blocks_total", 0), stats.get("kv_blocks_used", 0)
        header("kv_cache_usage_ratio", "gauge", "Fraction of KV-cache blocks in use (0 to 1).")
        lines.append(f"{PREFIX}kv_cache_usage_ratio {_number(used / total if total else 0.0)}")
        with self.lock:
            header("request_success_total", "counter", "Finished requests by finish reason.")
            for reason, n in sorted(self.finished.items()):
                lines.append(f'{PREFIX}request_success_total{{finish_reason="{reason}"}} {n}')
            header("time_to_first_token_seconds", "histogram", "Seconds from arrival to the first token.")
            lines += self.time_to_first_token.lines(f"{PREFIX}time_to_first_token_seconds")
            header("e2e_request_latency_seconds", "histogram", "Seconds from arrival to the last token.")
            lines += self.e2e_latency.lines(f"{PREFIX}e2e_request_latency_seconds")
        return "\n".join(lines) + "\n"
