"""Real training steps on tiny models: LoRA, QLoRA, full, continued pretraining, resume and merge."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.finetune.checkpoint import latest_checkpoint, load_state
from engine.finetune.trainer import train
from engine.models.merge import merge_adapter
from engine.progress import Cancelled
from tests.finetune.conftest import tiny_config


def test_lora_loss_falls(tiny_model_dir, chat_file, tmp_path):
    result = train(tiny_config(chat_file, epochs=6, lr=2e-2), tiny_model_dir("llama"), tmp_path / "run")
    losses = result["losses"]
    assert len(losses) == 18
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # a random-init model learns slowly, but it learns
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def test_metrics_reported_each_step(tiny_model_dir, chat_file, tmp_path):
    seen = []
    train(tiny_config(chat_file, epochs=1, eval_fraction=0.34, eval_every=1), tiny_model_dir("qwen2"),
          tmp_path / "run", progress=lambda f=None, m=None, metrics=None, step=None: seen.append(metrics or {}))
    steps = [m for m in seen if "loss" in m]
    assert steps and {"loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_gib", "eval_loss"} <= set(steps[-1])


def test_resume_reproduces_uninterrupted_losses(tiny_model_dir, chat_file, tmp_path):
    config = tiny_config(chat_file, epochs=3, lora_dropout=0.2, save_every=2)  # dropout: RNG must be restored
    model = tiny_model_dir("mistral")
    straight = train(config, model, tmp_path / "straight")["losses"]

    cancel = threading.Event()

    def stop_at_4(fraction=None, message=None, metrics=None, step=None):
        if step == 4:
            cancel.set()

    with pytest.raises(Cancelled):
        train(config, model, tmp_path / "first", progress=stop_at_4, cancel=cancel)
    assert load_state(latest_checkpoint(tmp_path / "first")).step == 4
    resumed = train(config, model, tmp_path / "second", resume=tmp_path / "first")["losses"]
    assert resumed == pytest.approx(straight[4:], rel=1e-5, abs=1e-6)


def test_more_epochs_on_a_finished_run(tiny_model_dir, chat_file, tmp_path):
    model = tiny_model_dir("llama")
    first = train(tiny_config(chat_file, epochs=1), model, tmp_path / "one")
    more = train(tiny_config(chat_file, epochs=2), model, tmp_path / "two", resume=tmp_path / "one")
    assert first["steps"] == 3 and more["steps"] == 6 and len(more["losses"]) == 3


def test_merged_model_equals_base_plus_adapter(tiny_model_dir, chat_file, tmp_path):
    from peft import PeftModel

    base_dir = tiny_model_dir("qwen2")
    result = train(tiny_config(chat_file, epochs=2, lr=5e-2), base_dir, tmp_path / "run")
    merged_dir = merge_adapter(base_dir, result["adapter"], tmp_path / "merged")
    ids = torch.tensor([[1, 200, 300, 400, 500, 600]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(base_dir))
        with_adapter = PeftModel.from_pretrained(base, result["adapter"]).eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()(ids).logits
    torch.testing.assert_close(merged, with_adapter, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-4)  # the adapter changed something
    assert (merged_dir / "tokenizer_config.json").is_file() and list(merged_dir.glob("*.safetensors"))


def test_full_finetune_and_continued_pretraining(tiny_model_dir, chat_file, text_file, tmp_path):
    full = train(tiny_config(chat_file, method="full", epochs=4, lr=1e-3), tiny_model_dir("llama"),
                 tmp_path / "full")
    assert full["losses"][-1] < full["losses"][0]
    assert (tmp_path / "full" / "model" / "config.json").is_file()
    pretrain = train(tiny_config(text_file, method="full", seq_len=32, epochs=3, lr=1e-3, packing=True),
                     tiny_model_dir("llama"), tmp_path / "pretrain")
    assert pretrain["objective"] == "pretrain" and pretrain["losses"][-1] < pretrain["losses"][0]


def test_qlora_trains_on_cpu_with_bitsandbytes(tiny_model_dir, chat_file, tmp_path):
    pytest.importorskip("bitsandbytes")
    result = train(tiny_config(chat_file, method="qlora", epochs=3, lr=2e-2, grad_checkpointing=True),
                   tiny_model_dir("llama"), tmp_path / "q")
    assert result["losses"][-1] < result["losses"][0]
    assert (tmp_path / "q" / "adapter" / "adapter_model.safetensors").is_file()


def test_out_of_memory_message_suggests_settings_and_names_checkpoint(tiny_model_dir, chat_file, tmp_path):
    from engine.finetune.trainer import _oom_message

    train(tiny_config(chat_file, epochs=1, save_every=1), tiny_model_dir("llama"), tmp_path / "run")
    message = _oom_message(tiny_config(chat_file, method="full", batch_size=4), 7, tmp_path / "run")
    assert "out of GPU memory at step 7" in message and "batch_size 2 with grad_accum 2" in message
    assert "method lora or qlora" in message and str(latest_checkpoint(tmp_path / "run")) in message
