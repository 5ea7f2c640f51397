"""Refusals: each bad input gets a message naming what is wrong, before anything is written, and an
interrupted write leaves no file behind."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from engine.export.exporter import ExportRequest, ensure_free_space, export_gguf
from engine.export.quant_types import QUANT_TYPES, ExportError, parse_quants
from engine.export.writer import write_gguf
from engine.models.inspect import ModelFormatError
from engine.progress import Cancelled


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_unsupported_architecture(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir("llama"), tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "gpt_neox"}))
    with pytest.raises(ExportError, match="model_type 'gpt_neox' cannot be exported"):
        export_gguf(ExportRequest(str(model), "f16", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_missing_tokenizer(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir("llama"), tmp_path / "m")
    (model / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match="missing tokenizer"):
        export_gguf(ExportRequest(str(model), "f16", str(tmp_path / "out")))


def test_unknown_quant_type():
    with pytest.raises(ExportError, match=r"quant: unknown type\(s\) q3_xyz \(known: f32, f16"):
        parse_quants("f16,q3_xyz")
    with pytest.raises(ExportError, match="at least one"):
        parse_quants(" , ")


def test_not_enough_disk_space(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ExportError, match="output: not enough free disk space"):
        ensure_free_space(tmp_path, free + 2**40)


def test_not_a_lora_adapter(tiny_model_dir, tmp_path):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(ModelFormatError, match="not a PEFT adapter folder"):
        export_gguf(ExportRequest(str(tiny_model_dir("llama")), "f16", str(tmp_path / "out"),
                                  adapter_dir=str(tmp_path / "adapter")))
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    with pytest.raises(ModelFormatError, match="only LoRA can be merged"):
        export_gguf(ExportRequest(str(tiny_model_dir("llama")), "f16", str(tmp_path / "out"),
                                  adapter_dir=str(tmp_path / "adapter")))


def test_cancelled_write_leaves_no_file(tiny_model_dir, tmp_path):
    cancel = threading.Event()

    def progress(fraction=None, message=None, metrics=None, step=None):
        if fraction and fraction > 0.3:
            cancel.set()

    with pytest.raises(Cancelled):
        write_gguf(tiny_model_dir("qwen2"), tmp_path / "m.F16.gguf", QUANT_TYPES["f16"], progress=progress,
                   cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_k_quants_are_not_written_by_the_gguf_package(tiny_model_dir, tmp_path):
    with pytest.raises(ExportError, match="made by llama.cpp's quantizer"):
        write_gguf(tiny_model_dir("qwen2"), tmp_path / "m.gguf", QUANT_TYPES["q4_k_m"])
