"""Corpus preparation: readers, record steps (language ID, cleaning, filters, PII), dedup, formats, the runner.

Plain functions and dataclasses; the job kind `data_prep` and the Datasets page sit on top of `runner.run_recipe`.
"""
