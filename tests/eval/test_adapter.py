"""`inkstone eval MODEL --adapter DIR`: a LoRA adapter is merged once (cached under the data dir) and scored
exactly like that merged model, so a finetune's adapter can be evaluated without registering anything."""

from __future__ import annotations

import json

import pytest

import cli
from app import evals


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights (PEFT's default init would leave the model unchanged)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("llama")), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    return out


def _eval(home, model, tmp_path, *extra) -> dict:
    out = tmp_path / "r.json"
    code = cli.main(["--data-dir", str(home), "eval", str(model), *extra, "--tasks", "arc_easy", "--split",
                     "validation", "--limit", "3", "--dtype", "float32", "--device", "cpu", "--output", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def test_an_adapter_is_merged_once_and_scored_as_the_merged_model(home, tiny_model_dir, adapter_dir, tmp_path):
    from engine.models.merge import merge_adapter

    base = tiny_model_dir("llama")
    plain = _eval(home, base, tmp_path)
    adapted = _eval(home, base, tmp_path, "--adapter", str(adapter_dir))
    reference = merge_adapter(base, adapter_dir, tmp_path / "merged-by-hand")
    by_hand = _eval(home, reference, tmp_path)
    runs = {run.model_ref: run for run in evals.list_runs(home)}
    lls = {ref: [lp for s in evals.samples(home, run.id) for lp in s.logprobs] for ref, run in runs.items()}
    with_adapter = lls[f"{base} + {adapter_dir.name}"]
    assert with_adapter == pytest.approx(lls[str(reference)], abs=1e-4)  # the merged model, exactly
    assert with_adapter != pytest.approx(lls[str(base)], abs=1e-3)  # and not the base
    assert adapted["results"]["arc_easy"] == pytest.approx(by_hand["results"]["arc_easy"])
    assert "acc" in plain["results"]["arc_easy"]
    again = _eval(home, base, tmp_path, "--adapter", str(adapter_dir))  # the merged folder is reused
    assert again["results"] == adapted["results"]
    assert len(list((home / "cache" / "merged-adapters").iterdir())) == 1


def test_an_adapter_on_a_url_or_a_non_adapter_folder_is_refused(home, tmp_path, capsys):
    assert cli.main(["--data-dir", str(home), "eval", "http://127.0.0.1:9/v1", "--adapter", str(tmp_path),
                     "--tasks", "arc_easy"]) != 0
    assert "adapter: applies to an HF model" in capsys.readouterr().err
