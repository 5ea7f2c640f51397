"""llama.cpp runs our exports like the source model: teacher-forced next-token logits on the same ids.

- tiny random Llama (with Llama-3.1 rope scaling), Qwen2 (qkv bias, tied embeddings), Mistral (GQA 4:1),
  exported as F32: the built-in verification must pass as lossless;
- the bundled SmolLM2, which arrives as a Q4_1 GGUF: our F16 export of its HF conversion agrees with HF, and
  with llama.cpp running the original Q4_1 file within that file's own quantization noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.export.quant_types import QUANT_TYPES
from engine.export.verify import VerificationError, hf_reference, verify_gguf
from engine.export.writer import write_gguf
from engine.models.bundled import bundled_gguf_path
from tests.export.conftest import teacher_forced_logits


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_tiny_f32_exports_pass_lossless_verification(arch, tiny_model_dir, tmp_path):
    src = tiny_model_dir(arch)
    path = write_gguf(src, tmp_path / "tiny.F32.gguf", QUANT_TYPES["f32"])
    ref = hf_reference(src)
    metrics = verify_gguf(path, ref, lossless=True)
    assert metrics["top1_agreement"] >= 0.98 and abs(metrics["ppl_delta_pct"]) < 0.01
    # A random model's logits are nearly flat, so top-1 and perplexity hardly notice a layout bug (a missing
    # q/k permutation moves them by 1%); F32 must match to float rounding.
    assert metrics["max_abs_logit_diff"] < 1e-3 * np.abs(ref.logits).max()
    assert len(metrics["answers"]) == 2 and metrics["tokens_per_s"] > 0


def test_a_wrong_layout_fails_verification(bundled_model_dir, smol_ref, tmp_path, monkeypatch):
    """Skipping the q/k permutation is the classic conversion bug: verification must fail the F16 export."""
    import engine.export.writer as writer

    monkeypatch.setattr(writer, "transform", lambda name, data, *args: data)
    path = write_gguf(bundled_model_dir, tmp_path / "bad.F16.gguf", QUANT_TYPES["f16"])
    with pytest.raises(VerificationError, match="disagrees with the HF model"):
        verify_gguf(path, smol_ref, lossless=True)


def test_bundled_f16_matches_hf_and_the_original_q4_1(smol_ref, smol_f16):
    ref = smol_ref
    metrics = verify_gguf(smol_f16, ref, lossless=True)
    assert metrics["top1_agreement"] >= 0.98 and abs(metrics["ppl_delta_pct"]) <= 0.5
    assert "Paris" in metrics["answers"][0]

    ours = teacher_forced_logits(smol_f16, ref.ids)
    original = teacher_forced_logits(bundled_gguf_path(), ref.ids)
    # The HF folder holds the Q4_1 weights dequantized, so both files carry the same weights; what remains is
    # llama.cpp's Q4_1 kernels quantizing activations (and our F16 rounding).
    hf_vs_original = (ref.logits.argmax(-1) == original.argmax(-1)).mean()
    ours_vs_original = (ours.argmax(-1) == original.argmax(-1)).mean()
    assert ours_vs_original >= 0.9 and abs(ours_vs_original - hf_vs_original) <= 0.03
    scale = np.abs(original).max()
    assert np.abs(ours - original).max() < 0.1 * scale
