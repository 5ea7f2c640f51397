"""Thin job tasks: validate arguments, call an engine entry point, record results and lineage rows."""
