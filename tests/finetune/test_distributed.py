"""The multi-process path for real on the CPU: 2 processes over gloo, DDP for LoRA, DeepSpeed ZeRO for full."""

from __future__ import annotations

import pytest

from engine.train.launch import launch
from tests.conftest import REPO
from tests.finetune.conftest import tiny_config

# DeepSpeed JIT-builds a small CPU op on first use (about a minute on 2 cores); keep it between runs.
EXTENSIONS = REPO / ".data" / "torch-extensions"


def test_lora_over_two_processes_with_ddp(tiny_model_dir, chat_file, tmp_path):
    result = launch(tiny_config(chat_file, num_procs=2, batch_size=1, epochs=2), tiny_model_dir("llama"),
                    tmp_path / "ddp")
    assert result["processes"] == 2 and result["steps"] == 6 and len(result["losses"]) == 6
    assert (tmp_path / "ddp" / "adapter" / "adapter_model.safetensors").is_file()


def test_full_finetune_with_deepspeed_zero2(tiny_model_dir, chat_file, tmp_path):
    pytest.importorskip("deepspeed")
    seen = []
    result = launch(tiny_config(chat_file, method="full", deepspeed="zero2", num_procs=2, batch_size=1, epochs=1,
                                lr=1e-3),
                    tiny_model_dir("llama"), tmp_path / "ds",
                    progress=lambda f=None, m=None, metrics=None, step=None: seen.append(metrics or {}),
                    env={"TORCH_EXTENSIONS_DIR": str(EXTENSIONS)})
    assert result["processes"] == 2 and result["steps"] == 3
    assert any("loss" in m for m in seen)  # rank 0's progress came back through the launcher
    assert (tmp_path / "ds" / "model" / "config.json").is_file()
    assert (tmp_path / "ds" / "checkpoints").is_dir()
    # one more epoch from ZeRO's own sharded checkpoint
    more = launch(tiny_config(chat_file, method="full", deepspeed="zero2", num_procs=2, batch_size=1, epochs=2,
                              lr=1e-3),
                  tiny_model_dir("llama"), tmp_path / "ds-more", resume=tmp_path / "ds",
                  env={"TORCH_EXTENSIONS_DIR": str(EXTENSIONS)})
    assert more["steps"] == 6 and len(more["losses"]) == 3
