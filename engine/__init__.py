"""Inkstone's engine: plain library code for every stage of the chain.

It imports nothing of ours (no app/, jobs/ or ui/), so each stage also runs from a notebook or the CLI.
"""
