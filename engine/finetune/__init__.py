"""Finetuning: SFT (full, LoRA, QLoRA) and continued pretraining on one training loop, plus data formats,
assistant-only masking, packing, checkpoints, adapter merge and a VRAM planner."""
