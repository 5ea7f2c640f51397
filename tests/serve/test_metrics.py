"""The hand-written Prometheus exposition parses with the reference parser and adds up."""

from __future__ import annotations

import pytest

from engine.serve.metrics import ServerMetrics

STATS = dict(running=2, waiting=1, kv_blocks_total=100, kv_blocks_used=25, prompt_tokens=40,
             cached_prompt_tokens=16, generation_tokens=9, preemptions=0, requests_finished=3)


def test_render_parses_and_counts():
    parser = pytest.importorskip("prometheus_client.parser")
    metrics = ServerMetrics()
    metrics.observe_finished("stop", 0.3, 0.02)
    metrics.observe_finished("length", 70.0, None)
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics.render(STATS))}
    value = lambda name, suffix="": next(s.value for s in families[name].samples if s.name == name + suffix)
    assert value("inkstone_num_requests_running") == 2
    assert value("inkstone_kv_cache_usage_ratio") == 0.25
    assert value("inkstone_prefix_cache_hit_tokens", "_total") == 16
    e2e = families["inkstone_e2e_request_latency_seconds"]
    buckets = {s.labels["le"]: s.value for s in e2e.samples if s.name.endswith("_bucket")}
    assert buckets["0.25"] == 0 and buckets["0.5"] == 1 and buckets["60.0"] == 1 and buckets["+Inf"] == 2
    assert value("inkstone_time_to_first_token_seconds", "_count") == 1
    reasons = {s.labels["finish_reason"]: s.value for s in families["inkstone_request_success"].samples}
    assert reasons == {"stop": 1, "length": 1}
