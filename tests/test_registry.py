"""The model registry and the model inspection it relies on, with bad folders and files."""

from __future__ import annotations

import json
import shutil

import pytest

from app.errors import NotFound
from app.registry import list_models, register_folder, remove_model, resolve_model
from engine.models.bundled import bundled_gguf_path
from engine.models.inspect import ModelFormatError, check_gguf_file, inspect_hf_folder


def test_bundled_model_info(bundled_model_dir):
    info = inspect_hf_folder(bundled_model_dir)
    assert info.arch == "llama" and 134_000_000 < info.params < 135_000_000
    assert info.context_len == 8192 and info.has_chat_template and info.num_layers == 30


def test_register_resolve_remove(home, tiny_model_dir):
    folder = tiny_model_dir("qwen2")
    model = register_folder(home, folder, name="tiny")
    assert model.arch == "qwen2" and model.params > 0 and not model.managed
    assert resolve_model(home, "tiny").id == resolve_model(home, model.id).id
    with pytest.raises(ValueError, match="already registered"):
        register_folder(home, folder, name="tiny")
    remove_model(home, "tiny")
    assert list_models(home) == [] and folder.exists()  # not ours to delete
    with pytest.raises(NotFound, match="registered: none"):
        resolve_model(home, "tiny")


def test_managed_model_folder_is_deleted_with_its_row(home, tiny_model_dir):
    folder = home / "models" / "copy"
    shutil.copytree(tiny_model_dir("llama"), folder)
    register_folder(home, folder, name="copy", managed=True)
    remove_model(home, "copy")
    assert not folder.exists()


def test_bad_folders_are_named(tmp_path, tiny_model_dir):
    with pytest.raises(ModelFormatError, match="not a folder"):
        inspect_hf_folder(tmp_path / "missing")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir("llama"), bad)
    (bad / "config.json").write_text("{broken")
    with pytest.raises(ModelFormatError, match="config.json: not valid JSON"):
        inspect_hf_folder(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelFormatError, match="'gpt2' is not supported"):
        inspect_hf_folder(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "llama"}))
    next(bad.glob("*.safetensors")).write_bytes(b"\xff" * 16)
    with pytest.raises(ModelFormatError, match="corrupt safetensors"):
        inspect_hf_folder(bad)
    (bad / "tokenizer.json").unlink()
    with pytest.raises(ModelFormatError, match="no tokenizer"):
        inspect_hf_folder(bad)


def test_gguf_checks(tmp_path):
    assert check_gguf_file(bundled_gguf_path()) == "llama"
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(ModelFormatError, match="not a GGUF file"):
        check_gguf_file(fake)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(bundled_gguf_path().read_bytes()[:5000])
    with pytest.raises(ModelFormatError, match="corrupt GGUF"):
        check_gguf_file(truncated)
