"""The whole export through its entry point: a llama.cpp K-quant beside gguf-package types, every file
verified, Modelfiles written, no scratch left; and a LoRA adapter merged before export."""

from __future__ import annotations

import torch
from gguf import GGUFReader

from engine.export.exporter import ExportRequest, export_gguf
from engine.models.merge import merge_adapter


def file_type(path) -> int:
    return int(GGUFReader(str(path)).fields["general.file_type"].contents())


def test_k_quant_and_q8_export_with_verification(tiny_model_dir, tmp_path):
    files = export_gguf(ExportRequest(str(tiny_model_dir("qwen2")), "q4_k_m,q8_0", str(tmp_path), name="tiny"))
    assert [f.quant for f in files] == ["q4_k_m", "q8_0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny.Q4_K_M.Modelfile", "tiny.Q4_K_M.gguf", "tiny.Q8_0.Modelfile", "tiny.Q8_0.gguf"]  # no F16 scratch
    assert file_type(files[0].path) == 15 and file_type(files[1].path) == 7  # llama.cpp's MOSTLY_Q4_K_M, Q8_0
    for f in files:
        assert f.size_bytes == f.path.stat().st_size
        assert 0 <= f.metrics["top1_agreement"] <= 1 and f.metrics["tokens_per_s"] > 0
        assert f"FROM ./{f.path.name}" in f.modelfile.read_text()


def test_lora_adapter_is_merged_before_export(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = tiny_model_dir("llama")
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)  # random B too, so the adapter changes the outputs
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir)), config).save_pretrained(tmp_path / "lora")

    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314]])
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    want = PeftModel.from_pretrained(base, str(tmp_path / "lora"))(ids).logits
    merged = merge_adapter(base_dir, tmp_path / "lora", tmp_path / "merged")
    got = AutoModelForCausalLM.from_pretrained(str(merged))(ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (got - AutoModelForCausalLM.from_pretrained(str(base_dir))(ids).logits).abs().max() > 1e-3

    files = export_gguf(ExportRequest(str(base_dir), "f32", str(tmp_path / "out"), adapter_dir=str(tmp_path / "lora"),
                                      name="tiny-lora"))
    assert files[0].metrics["top1_agreement"] >= 0.98  # verified against the merged model, as lossless
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny-lora.F32.Modelfile", "tiny-lora.F32.gguf"]
