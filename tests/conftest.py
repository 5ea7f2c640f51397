"""Shared fixtures: the bundled model as an HF folder, and tiny random-init llama-family models.

Converted models are cached under .data/test-models (git-ignored) so repeated runs skip the conversion.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_MODELS = REPO / ".data" / "test-models"

# Tiny shapes that still exercise GQA, qkv bias (qwen2), sliding-window config (mistral) and tied embeddings.
TINY_CONFIGS = {
    "llama": dict(model_type="llama", num_key_value_heads=2, tie_word_embeddings=False,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
    "qwen2": dict(model_type="qwen2", num_key_value_heads=2, tie_word_embeddings=True),
    "mistral": dict(model_type="mistral", num_key_value_heads=1, tie_word_embeddings=False, sliding_window=None),
}


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    from engine.models.bundled import ensure_bundled_hf

    return ensure_bundled_hf(TEST_MODELS)


def make_tiny_model(arch: str, out: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Write a random-init model of a llama-family arch with the bundled tokenizer (vocab 49152)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = dict(TINY_CONFIGS[arch])
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(
        model_type, vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
        **spec,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(bundled_model_dir, tmp_path_factory):
    """Factory: tiny_model_dir('llama'|'qwen2'|'mistral') -> an HF folder, built once per session."""
    built: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in built:
            out = tmp_path_factory.mktemp(f"tiny-{arch}")
            built[arch] = make_tiny_model(arch, out, bundled_model_dir)
        return built[arch]

    return build


pytest_plugins = ["nicegui.testing.user_plugin"]


@pytest.fixture(autouse=True)
def _keep_main_module():
    """NiceGUI's User simulation runs ui/main.py as __main__ and can leave sys.modules without one; a later first
    `import torch` (through dill) then fails. Put it back so test order does not matter."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None and "__main__" not in sys.modules:
        sys.modules["__main__"] = main


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh data dir for one test, exported as INKSTONE_HOME (the app, consumer and workers read it)."""
    root = tmp_path / "inkstone-home"
    root.mkdir()
    monkeypatch.setenv("INKSTONE_HOME", str(root))
    return root
