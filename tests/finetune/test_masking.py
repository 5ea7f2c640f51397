"""Only assistant tokens are trained, whatever the chat template; packing never leaks across samples."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.finetune.data import Example
from engine.finetune.packing import collate, pack, sft_samples
from engine.finetune.template import FALLBACK_TEMPLATE, IGNORE, ensure_chat_template, preview, tokenize_conversation
from tests.finetune.conftest import CHATS

# Llama-3's shape, spelled with special tokens this tokenizer has (header markers, then an end-of-turn token).
LLAMA3 = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}<|im_end|>\n\n"
    "{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant<|im_end|>\n\n{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
# Rewrites history (drops earlier answers): not prefix-stable, so answers are located by search.
FORGETFUL = (
    "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}<{{ m['role'] }}>"
    "{{ m['content'] }}</s>{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "Four"},
]


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir):
    return AutoTokenizer.from_pretrained(str(bundled_model_dir))


def trained_text(tok, messages, template=None) -> str:
    if template is not None:
        tok.chat_template = template
    return "".join(text for text, trained in preview(tok, messages) if trained)


@pytest.mark.parametrize(
    "template, expected",
    [
        (None, "Hello there<|im_end|>\nFour<|im_end|>\n"),  # the model's own (ChatML)
        (LLAMA3, "Hello there<|endoftext|>Four<|endoftext|>"),
        (MISTRAL, "Hello there<|im_end|>Four<|im_end|>"),  # eos_token is <|im_end|> here
        (FALLBACK_TEMPLATE, "Hello there<|im_end|>\nFour<|im_end|>\n"),  # the 2nd newline joins "###"
    ],
)
def test_only_assistant_turns_are_trained(bundled_model_dir, template, expected):
    tok = AutoTokenizer.from_pretrained(str(bundled_model_dir))
    assert trained_text(tok, CONVERSATION, template) == expected


def test_template_that_rewrites_history_falls_back_to_search(tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    assert trained_text(tokenizer, CONVERSATION, FORGETFUL) == "Four"


def test_base_model_gets_fallback_template(tokenizer):
    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = None
    assert ensure_chat_template(tok) and tok.chat_template == FALLBACK_TEMPLATE
    assert not ensure_chat_template(tok)


def test_truncation_and_labels_match_ids(tokenizer):
    sample = tokenize_conversation(tokenizer, CONVERSATION, max_len=10)
    assert len(sample.input_ids) == len(sample.labels) == 10
    full = tokenize_conversation(tokenizer, CONVERSATION, max_len=4096)
    assert all(label in (IGNORE, tok) for tok, label in zip(full.input_ids, full.labels, strict=True))


def test_packed_rows_do_not_attend_across_samples(tokenizer, tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir("llama")), attn_implementation="sdpa").eval()
    samples = sft_samples(tokenizer, [Example(i, messages=m) for i, m in enumerate(CHATS[:2], 1)], 256)
    [row] = pack(samples, seq_len=256)
    assert row.position_ids.count(0) == 2
    packed = collate([row], tokenizer.eos_token_id)
    alone = collate(pack(samples[1:], 256), tokenizer.eos_token_id)
    with torch.no_grad():
        packed_logits = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits
        alone_logits = model(input_ids=alone["input_ids"], position_ids=alone["position_ids"], use_cache=False).logits
    n = alone["input_ids"].shape[1]
    torch.testing.assert_close(packed_logits[0, -n:], alone_logits[0], atol=1e-4, rtol=1e-4)
    # and the first token of a packed sample is never trained (it would be predicted from the previous one)
    assert row.labels[len(samples[0].input_ids)] == IGNORE
