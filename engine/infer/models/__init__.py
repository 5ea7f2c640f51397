"""Registry of the model implementations the engine runs, by HF `model_type`."""

from __future__ import annotations

from engine.infer.models.llama import LlamaForCausalLM

MODELS = {"llama": LlamaForCausalLM, "mistral": LlamaForCausalLM, "qwen2": LlamaForCausalLM}


def model_class(model_type: str):
    try:
        return MODELS[model_type]
    except KeyError:
        raise ValueError(f"model_type {model_type!r} is not supported by the inference engine "
                         f"(supported: {', '.join(sorted(MODELS))})") from None
