"""Load the model a method trains: full weights, a LoRA adapter on a frozen base, or QLoRA on a 4-bit base.

QLoRA follows the paper's recipe through bitsandbytes (nf4, double quantization, bf16 compute) and peft;
LoRA targets every linear layer but the head by default. Gradient checkpointing needs `model.train()` or
it silently does nothing, so the model leaves here in train mode.
"""

from __future__ import annotations

from pathlib import Path

from engine.finetune.config import FinetuneConfig


def pick_precision(config: FinetuneConfig, device: str) -> str:
    """bf16 where the GPU has it, fp16 on older GPUs, fp32 on the CPU (unless asked otherwise)."""
    import torch

    if config.precision != "auto":
        return config.precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def lora_config(config: FinetuneConfig):
    from peft import LoraConfig

    targets = "all-linear" if config.lora_targets == "all-linear" else [
        t.strip() for t in config.lora_targets.split(",") if t.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def load_for_training(config: FinetuneConfig, model_path: str | Path, device: str, precision: str,
                      adapter_path: Path | None = None):
    """The model ready to train on `device` (a peft model for lora/qlora), in train mode."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(config.seed)  # LoRA init is seeded: two runs start from the same adapter
    compute = torch_dtype(precision)
    kwargs: dict = {"attn_implementation": "sdpa"}
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
        kwargs["device_map"] = {"": device if device != "cuda" else torch.cuda.current_device()}
        kwargs["dtype"] = compute
    elif config.method == "lora":
        kwargs["dtype"] = compute  # the frozen base in the compute dtype; the adapter stays fp32
    else:
        kwargs["dtype"] = torch.float32  # fp32 master weights; autocast computes in bf16/fp16
    model = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
    if config.method != "qlora":
        model.to(device)
    model.config.use_cache = False
    if config.is_adapter:
        from peft import PeftModel, get_peft_model

        # Not peft's prepare_model_for_kbit_training: it upcasts the frozen embeddings and head to fp32 (+0.5 GiB
        # on a 7B model) for no gain; the loss is computed in fp32 anyway, and the adapter is fp32 below.
        for p in model.parameters():
            p.requires_grad_(False)
        if config.grad_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need grads in
        if adapter_path is not None:
            model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=True)
        else:
            model = get_peft_model(model, lora_config(config))
        for p in model.parameters():  # adapter weights train in fp32 whatever the base's dtype
            if p.requires_grad:
                p.data = p.data.float()
    if config.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def trainable_parameters(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(config: FinetuneConfig, params: list, device: str):
    """Paged 8-bit AdamW for QLoRA (its optimizer memory spills to the host on spikes); fused AdamW on GPUs."""
    import torch

    if config.method == "qlora":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                             fused=device.startswith("cuda"))


def count_parameters(model) -> tuple[int, int]:
    """(all parameters, trainable parameters); 4-bit weights count as their logical size."""
    total = trainable = 0
    for p in model.parameters():
        n = p.numel() * (2 if getattr(p, "quant_type", None) else 1)  # packed nf4: two weights a byte
        total += n
        trainable += n if p.requires_grad else 0
    return total, trainable
