"""Benchmarks: each script runs its baseline in the same run and appends a dated row to docs/benchmarks.md."""
