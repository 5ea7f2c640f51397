"""The finetune entry point: SFT (full, LoRA, QLoRA) and continued pretraining on one loop.

`train(config, model_path, output, progress, cancel)` runs in one process, or in each of several processes
started by `engine.train.launch` (DDP, or DeepSpeed ZeRO for full runs), reading its rank from the
environment. Rank 0 reports progress; a stop request is agreed on by all processes at a step boundary, a
checkpoint is written and `Cancelled` raised. Restarting with `resume` continues from the latest checkpoint
with the same data order, weights, optimizer and RNG, so the loss curve continues as if never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

from engine.finetune import checkpoint as ckpt
from engine.finetune.config import FinetuneConfig
from engine.finetune.data import DataError, load_examples
from engine.finetune.loss import LossModule, causal_lm_loss
from engine.finetune.model_setup import (
    count_parameters,
    load_for_training,
    make_optimizer,
    pick_precision,
    torch_dtype,
    trainable_parameters,
)
from engine.finetune.packing import collate, epoch_order, pack, pretrain_rows, sft_samples, split_eval
from engine.finetune.schedule import make_scheduler
from engine.finetune.template import ensure_chat_template
from engine.finetune.throughput import flops_per_token, peak_flops, peak_memory_gib
from engine.progress import Cancelled, Progress, no_progress


class OutOfMemory(RuntimeError):
    """The run did not fit; the message suggests settings and names the checkpoint it keeps."""


def _dist():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _all_mean(values: list[float], device) -> list[float]:
    import torch

    dist, _, world = _dist()
    if dist is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / world).tolist()


def build_rows(config: FinetuneConfig, tokenizer, examples, objective: str):
    if objective == "pretrain":
        return pretrain_rows(tokenizer, examples, config.seq_len)
    return pack(sft_samples(tokenizer, examples, config.seq_len), config.seq_len, enabled=config.packing)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def evaluate(model, rows, config: FinetuneConfig, pad_id: int, device, precision: str) -> float:
    import torch

    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad(), _autocast(device, precision):
        for i in range(0, len(rows), config.batch_size):
            loss, n = causal_lm_loss(model, _to(collate(rows[i:i + config.batch_size], pad_id), device),
                                     recompute=False)
            total, tokens = total + float(loss), tokens + n
    model.train(was_training)
    total, tokens = _all_mean([total, float(tokens)], device)
    return total / max(tokens, 1.0)


def _autocast(device, precision: str):
    import torch

    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    enabled = precision in ("bf16", "fp16") and device_type == "cuda"
    return torch.autocast(device_type, dtype=torch_dtype(precision), enabled=enabled)


def _oom_message(config: FinetuneConfig, step: int, output: Path) -> str:
    last = ckpt.latest_checkpoint(output)
    hints = []
    if config.batch_size > 1:
        hints.append(f"batch_size {config.batch_size // 2} with grad_accum {config.grad_accum * 2}")
    hints.append(f"seq_len {max(16, config.seq_len // 2)}")
    if not config.grad_checkpointing:
        hints.append("grad_checkpointing on")
    if config.method == "full":
        hints.append("method lora or qlora, or deepspeed zero3_offload")
    elif config.method == "lora":
        hints.append("method qlora")
    return (f"out of GPU memory at step {step}; try {', '.join(hints)}. "
            f"Last checkpoint kept: {last or 'none yet'}")


def train(config: FinetuneConfig, model_path: str | Path, output: str | Path, progress: Progress = no_progress,
          cancel=None, resume: str | Path | None = None) -> dict:
    """Train and write the adapter (output/adapter) or model (output/model); returns a summary."""
    import torch

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    dist, rank, world = _dist()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = "cpu" if config.device == "cpu" or not torch.cuda.is_available() else f"cuda:{local_rank}"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    precision = pick_precision(config, device)
    report = progress if rank == 0 else no_progress

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    used_fallback_template = ensure_chat_template(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fmt, examples = load_examples(config.data, config.data_format, config.column_map)
    objective = config.resolved_objective(fmt)
    train_ex, eval_ex = split_eval(examples, config.eval_fraction, config.seed)
    rows = build_rows(config, tokenizer, train_ex, objective)
    eval_rows = build_rows(config, tokenizer, eval_ex, objective) if eval_ex else []
    per_rank = len(rows) // world
    if per_rank < 1:
        raise DataError(f"{config.data}: {len(rows)} usable training rows, fewer than the {world} processes "
                        "(rows without an assistant answer are skipped)")
    batches_per_epoch = math.ceil(per_rank / config.batch_size)
    grad_accum = min(config.grad_accum, batches_per_epoch)
    steps_per_epoch = batches_per_epoch // grad_accum
    total_steps = config.max_steps or config.epochs * steps_per_epoch

    resume_from = ckpt.latest_checkpoint(resume) if resume else None
    state = ckpt.load_state(resume_from) if resume_from else ckpt.TrainState()
    adapter_path = resume_from / "adapter" if resume_from and config.is_adapter else None
    model = load_for_training(config, model_path, device, precision, adapter_path)
    n_params, n_trainable = count_parameters(model)
    mcfg = model.config
    token_flops = flops_per_token(n_params, mcfg.num_hidden_layers, mcfg.hidden_size, config.seq_len,
                                  full=not config.is_adapter)
    gpu_peak = peak_flops(device)

    engine = None
    if config.deepspeed:
        import deepspeed

        from engine.finetune.deepspeed_config import zero_config

        ds_config = zero_config(config, grad_accum, precision, device)
        engine, optimizer, _, _ = deepspeed.initialize(
            model=LossModule(model, recompute=False), model_parameters=trainable_parameters(model),
            config=ds_config,
            lr_scheduler=lambda opt: make_scheduler(opt, total_steps, config.warmup_ratio, config.lr_schedule))
        wrapped = engine
        if resume_from:
            ckpt.restore(resume_from, model, optimizer, adapter=False, rank=rank, deepspeed_engine=engine)
            # Rebuilt at its step for the (maybe longer) run, on the torch optimizer ZeRO wraps.
            engine.lr_scheduler = make_scheduler(engine.basic_optimizer, total_steps, config.warmup_ratio,
                                                 config.lr_schedule, state.step)
    else:
        optimizer = make_optimizer(config, trainable_parameters(model), device)
        if resume_from:
            ckpt.restore(resume_from, model, optimizer, adapter=config.is_adapter, rank=rank)
        scheduler = make_scheduler(optimizer, total_steps, config.warmup_ratio, config.lr_schedule, state.step)
        wrapped = LossModule(model)
        if dist is not None:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(wrapped, device_ids=[local_rank] if device != "cpu" else None)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" and engine is None else None

    report(0.0, f"{objective} {config.method}: {len(rows)} rows of ≤{config.seq_len} tokens, {total_steps} steps, "
                f"{n_trainable:,} of {n_params:,} parameters trained, {precision} on {device} × {world}"
           + (", fallback chat template" if used_fallback_template else "")
           + (f", resumed at step {state.step}" if resume_from else ""))
    losses: list[float] = []
    eval_loss = None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def save() -> Path:
        return ckpt.save_checkpoint(output, state, model, optimizer, adapter=config.is_adapter, rank=rank,
                                    keep=config.keep_checkpoints, deepspeed_engine=engine)

    try:
        while state.step < total_steps:
            order = epoch_order(len(rows), config.seed, state.epoch)[rank::world][:per_rank]
            if state.batch_in_epoch >= steps_per_epoch * grad_accum:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                continue
            started = time.perf_counter()
            window = []
            for b in range(state.batch_in_epoch, state.batch_in_epoch + grad_accum):
                idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                window.append(collate([rows[i] for i in idx], pad_id))
            normalizer = float(max(1, sum(int((w["labels"][:, 1:] != -100).sum()) for w in window)))
            lr = optimizer.param_groups[0]["lr"]  # the rate this step trains with
            window_loss = 0.0
            for i, batch in enumerate(window):
                batch = _to(batch, device)
                sync = i == len(window) - 1
                ctx = wrapped.no_sync() if dist is not None and engine is None and not sync else nullcontext()
                with ctx, _autocast(device, precision):
                    loss = wrapped(batch["input_ids"], batch["labels"], batch["position_ids"],
                                   torch.tensor(normalizer, device=device))
                if engine is not None:
                    engine.backward(loss * grad_accum)  # DeepSpeed divides by its accumulation steps
                    engine.step()
                elif scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
                window_loss += float(loss.detach())
            if engine is not None:
                grad_norm = float(engine.get_global_grad_norm() or 0.0)
            else:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                params = trainable_parameters(model)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm or float("inf")))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batch_in_epoch += grad_accum
            window_loss, tokens = _all_mean([window_loss, normalizer], device)
            tokens *= world
            state.tokens_seen += int(tokens)
            seconds = time.perf_counter() - started
            losses.append(window_loss)
            tps = sum(int(w["input_ids"].numel()) for w in window) * world / seconds
            metrics = {"loss": window_loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tps,
                       "peak_mem_gib": peak_memory_gib(device)}
            if gpu_peak:
                metrics["mfu"] = tps * token_flops / (gpu_peak * world)
            if config.eval_every and eval_rows and state.step % config.eval_every == 0:
                eval_loss = metrics["eval_loss"] = evaluate(model, eval_rows, config, pad_id, device, precision)
            report(state.step / total_steps, f"step {state.step}/{total_steps} loss {window_loss:.4f}", metrics,
                   step=state.step)
            if config.save_every and state.step % config.save_every == 0 and state.step < total_steps:
                save()
            if _stop_requested(cancel, device):
                path = save()
                raise Cancelled(f"stopped at step {state.step}; checkpoint {path}")
    except torch.OutOfMemoryError:
        raise OutOfMemory(_oom_message(config, state.step, output)) from None
    if eval_rows and (not config.eval_every or state.step % config.eval_every):
        eval_loss = evaluate(model, eval_rows, config, pad_id, device, precision)
        report(1.0, f"eval loss {eval_loss:.4f}", {"eval_loss": eval_loss}, step=state.step)
    final_ckpt = save()
    result = {"objective": objective, "method": config.method, "format": fmt, "steps": state.step,
              "tokens": state.tokens_seen, "losses": losses, "final_loss": losses[-1] if losses else None,
              "eval_loss": eval_loss, "checkpoint": str(final_ckpt), "processes": world}
    result.update(_write_outputs(config, model, tokenizer, output, rank, engine))
    if rank == 0:
        (output / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _write_outputs(config: FinetuneConfig, model, tokenizer, output: Path, rank: int, engine) -> dict:
    """The adapter in peft's standard format, or the full model as an HF folder (both with the tokenizer)."""
    if config.is_adapter:
        if rank == 0:
            model.save_pretrained(output / "adapter")
            tokenizer.save_pretrained(output / "adapter")
        return {"adapter": str(output / "adapter")}
    if engine is not None and config.deepspeed.startswith("zero3"):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            if rank == 0:
                model.save_pretrained(output / "model")
    elif rank == 0:
        model.save_pretrained(output / "model")
    if rank == 0:
        tokenizer.save_pretrained(output / "model")
    return {"model_dir": str(output / "model")}


def _stop_requested(cancel, device) -> bool:
    """All processes agree: one that was asked to stop stops them all at the same step."""
    flag = 1.0 if cancel is not None and cancel.is_set() else 0.0
    return _all_mean([flag], device)[0] > 0
