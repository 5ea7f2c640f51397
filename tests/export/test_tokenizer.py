"""llama.cpp's tokenizer, built from the vocab we wrote, splits tricky strings exactly as HF's tokenizer does,
and decodes them back to the same text."""

from __future__ import annotations

import pytest

TRICKY = [
    "Hello world", " leading space", "   three leading spaces", "trailing spaces   ", "中文分词测试：你好，世界！",
    "日本語とにほんご", "emoji 🙂👍🏽🇫🇷 and ñ, ü, é", "tabs\tand\nnew lines\n\n\n", "numbers 12345 and 3.14159",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "code: def f(x):\n    return x ** 2  # square",
    "It's, we're, they'll — don't", "",
]


@pytest.fixture(scope="module")
def tokenizers(bundled_model_dir, smol_f16):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    llm = Llama(model_path=str(smol_f16), vocab_only=True, verbose=False)
    yield AutoTokenizer.from_pretrained(str(bundled_model_dir)), llm
    llm.close()


@pytest.mark.parametrize("text", TRICKY)
def test_llamacpp_tokenizes_like_hf(tokenizers, text):
    hf, llm = tokenizers
    want = hf(text, add_special_tokens=False)["input_ids"]
    got = llm.tokenize(text.encode(), add_bos=False, special=True)
    assert got == want
    assert llm.detokenize(got, special=True).decode() == hf.decode(want)


def test_special_tokens_and_flags(tokenizers):
    hf, llm = tokenizers
    assert llm.token_bos() == hf.bos_token_id and llm.token_eos() == hf.eos_token_id
    assert llm.metadata["tokenizer.ggml.add_bos_token"] == "false"  # SmolLM2 adds no BOS, like HF here
    assert llm.metadata["tokenizer.chat_template"] == hf.chat_template
    assert llm.metadata["tokenizer.ggml.pre"] == "gpt-2"  # the converted folder splits no digits
