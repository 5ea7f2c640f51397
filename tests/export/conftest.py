"""Fixtures for the export tests: the bundled model's F16 export and HF reference, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smol_f16(bundled_model_dir, tmp_path_factory) -> Path:
    from engine.export.quant_types import QUANT_TYPES
    from engine.export.writer import write_gguf

    out = tmp_path_factory.mktemp("smol-gguf") / "smol.F16.gguf"
    return write_gguf(bundled_model_dir, out, QUANT_TYPES["f16"], name="smol")


@pytest.fixture(scope="session")
def smol_ref(bundled_model_dir):
    """The HF model's reference logits for the bundled model, computed once."""
    from engine.export.verify import hf_reference

    return hf_reference(bundled_model_dir)


def teacher_forced_logits(path: Path, ids: list[int]):
    """llama.cpp's logits for every position of ids (the same ids HF is given)."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=max(512, len(ids) + 64), n_threads=2, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        return np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()
