"""Our GGUF read back by transformers' own GGUF loader gives the source model's logits: the tensor names,
the q/k permutation (which the loader undoes), shapes and metadata are what the format expects.

The tiny llama fixture uses Llama-3.1 rope scaling, which transformers' GGUF loader does not read back (it
ignores rope_freqs); llama.cpp does, and test_llamacpp_parity checks that model there. The llama layout is
covered here by the bundled SmolLM2 (llama arch, plain rope).
"""

from __future__ import annotations

import pytest
import torch

from engine.export.quant_types import QUANT_TYPES
from engine.export.writer import write_gguf

IDS = torch.tensor([[1, 504, 3458, 282, 4649, 314, 253, 1345, 30, 378, 28, 29, 30, 31]])


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
def test_f32_export_reloads_with_identical_logits(arch, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    src = tiny_model_dir(arch)
    write_gguf(src, tmp_path / "tiny.F32.gguf", QUANT_TYPES["f32"])
    want = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)(IDS).logits
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.F32.gguf", dtype=torch.float32)
    torch.testing.assert_close(back(IDS).logits, want, atol=1e-5, rtol=1e-4)


def test_bundled_f16_export_reloads_with_the_same_predictions(bundled_model_dir, smol_f16):
    from transformers import AutoModelForCausalLM

    want = AutoModelForCausalLM.from_pretrained(str(bundled_model_dir), dtype=torch.float32)(IDS).logits
    back = AutoModelForCausalLM.from_pretrained(str(smol_f16.parent), gguf_file=smol_f16.name,
                                                dtype=torch.float32)
    got = back(IDS).logits
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    assert (got - want).abs().max() < 0.02 * want.abs().max()  # f16 rounding of the weights only
