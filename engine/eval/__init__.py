"""Evaluation: benchmarks and the user's own test sets scored on Inkstone's engine (issue 15)."""
