"""The Ollama Modelfile: the Go template matches the family of the model's jinja chat template, with its stop
tokens and the default system prompt the template injects."""

from __future__ import annotations

from engine.export.modelfile import render_modelfile, template_family, write_modelfile

LLAMA3_JINJA = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                "{{ m['content'] }}<|eot_id|>{% endfor %}")
MISTRAL_JINJA = "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% endif %}"


def test_chatml_template_with_the_default_system_prompt(bundled_model_dir):
    from transformers import AutoTokenizer

    jinja = AutoTokenizer.from_pretrained(str(bundled_model_dir)).chat_template
    text = render_modelfile("smol.Q8_0.gguf", jinja)
    assert "FROM ./smol.Q8_0.gguf" in text
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>" in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text


def test_llama3_and_mistral_families():
    assert template_family(LLAMA3_JINJA) == "llama3"
    assert template_family(MISTRAL_JINJA) == "mistral"
    llama3 = render_modelfile("m.gguf", LLAMA3_JINJA)
    assert "<|start_header_id|>assistant<|end_header_id|>" in llama3 and 'PARAMETER stop "<|eot_id|>"' in llama3
    assert "SYSTEM" not in llama3  # this template injects none
    mistral = render_modelfile("m.gguf", MISTRAL_JINJA)
    assert "[INST]" in mistral and 'PARAMETER stop "[/INST]"' in mistral


def test_unknown_family_leaves_the_template_to_ollama(tmp_path):
    path = tmp_path / "m.F16.gguf"
    out = write_modelfile(path, "{{ messages }}")
    assert out == tmp_path / "m.F16.Modelfile"
    text = out.read_text()
    assert "FROM ./m.F16.gguf" in text and "TEMPLATE" not in text.replace("no TEMPLATE", "")
