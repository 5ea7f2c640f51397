"""DeepSpeed ZeRO configs for full finetunes and pretraining: stages 1–3, optionally offloading to the CPU.

Built from the finetune's own settings so the two never disagree: micro-batch, accumulation, clipping and
precision come from the FinetuneConfig; the optimizer is DeepSpeed's AdamW (CPU-Adam when offloading).
"""

from __future__ import annotations

from engine.finetune.config import FinetuneConfig


def zero_config(config: FinetuneConfig, grad_accum: int, precision: str, device: str) -> dict:
    stage = int(config.deepspeed[4])
    offload = config.deepspeed.endswith("_offload")
    zero: dict = {"stage": stage, "overlap_comm": device != "cpu", "contiguous_gradients": True}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": device != "cpu"}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": device != "cpu"}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": config.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        # torch's AdamW where no fused kernel can be built (the CPU); CPU-Adam is chosen for offload.
        "optimizer": {"type": "AdamW", "params": {"lr": config.lr, "weight_decay": config.weight_decay,
                                                  "torch_adam": device == "cpu" and not offload}},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
