"""Building blocks of the engine's own model implementations: paged attention, rotary, norm, linear, sampler."""
