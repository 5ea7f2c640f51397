"""Reusable UI pieces that several pages share (job widgets, charts)."""
