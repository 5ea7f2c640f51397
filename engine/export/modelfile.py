"""An Ollama Modelfile beside each GGUF: FROM, a TEMPLATE translated from the model's jinja chat template,
its stop tokens and default system prompt.

Ollama speaks Go templates, not jinja, so the template family is recognised from the jinja text (ChatML as in
SmolLM2/Qwen, Llama-3 headers, Mistral [INST]) and the matching Go template written. A family we do not
recognise gets no TEMPLATE line: Ollama then falls back to the template embedded in the GGUF.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CHATML = ('{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
          '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
          '<|im_start|>assistant\n')
LLAMA3 = ('{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}'
          '{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
          '{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n')
MISTRAL = ('{{- range $i, $_ := .Messages }}{{- if eq .Role "user" }}[INST] '
           '{{ if and $.System (eq $i 0) }}{{ $.System }}\n\n{{ end }}{{ .Content }}[/INST]'
           '{{- else if eq .Role "assistant" }} {{ .Content }}</s>{{- end }}{{- end }}')

# family -> (marker in the jinja text, Go template, stop strings, regex for a default system prompt)
FAMILIES = {
    "chatml": ("<|im_start|>", CHATML, ["<|im_start|>", "<|im_end|>"],
               r"<\|im_start\|>system(?:\\n|\n)(.+?)<\|im_end\|>"),
    "llama3": ("<|start_header_id|>", LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               r"<\|start_header_id\|>system<\|end_header_id\|>(?:\\n|\n){2}(.+?)<\|eot_id\|>"),
    "mistral": ("[INST]", MISTRAL, ["[INST]", "[/INST]"], None),
}


def template_family(chat_template: str) -> str | None:
    for family, (marker, *_rest) in FAMILIES.items():
        if marker in chat_template:
            return family
    return None


def default_system_prompt(chat_template: str, family: str) -> str:
    """The system prompt a template injects when the chat has none (SmolLM2 does), as plain text.

    Inside a jinja string literal a newline may be written as a real newline or as the escape \\n."""
    pattern = FAMILIES[family][3]
    m = re.search(pattern, chat_template) if pattern else None
    return m.group(1).replace("\\'", "'") if m else ""


def _quote(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def render_modelfile(gguf_name: str, chat_template: str) -> str:
    lines = [f"# Ollama: ollama create NAME -f {gguf_name.removesuffix('.gguf')}.Modelfile",
             f"FROM ./{gguf_name}"]
    family = template_family(chat_template) if chat_template else None
    if family is None:
        lines.append("# no TEMPLATE: chat template family not recognised; Ollama uses the one in the GGUF")
        return "\n".join(lines) + "\n"
    _marker, template, stops, _pattern = FAMILIES[family]
    lines.append(f"TEMPLATE {_quote(template)}")
    system = default_system_prompt(chat_template, family)
    if system:
        lines.append(f"SYSTEM {_quote(system)}")
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path, chat_template: str) -> Path:
    out = gguf_path.with_suffix(".Modelfile")
    partial = out.with_name(out.name + ".partial")
    partial.write_text(render_modelfile(gguf_path.name, chat_template), encoding="utf-8")
    partial.replace(out)
    return out
